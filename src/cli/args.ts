// Option parsers shared by the mmsim commands: each error names the flag and the bad value.
import { InvalidArgumentError } from 'commander';
import { KNOB_NAMES } from '../inject/knobs.ts';
import { LAZY_SERIES, resolve_lazy_series, type LazySeries } from '../mm/lazy_mmu.ts';

export function int(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number, got '${v}'`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

export function prob(v: string): number {
  const n = Number(v);
  if (!/^[0-9.eE-]+$/.test(v) || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`must be a probability between 0 and 1, got '${v}'`);
  return n;
}

/** --knob, repeatable */
export function knob(v: string, prev: string[]): string[] {
  if (!(KNOB_NAMES as string[]).includes(v)) throw new InvalidArgumentError(`unknown bug knob '${v}' (mmsim knobs lists them)`);
  return [...prev, v];
}

/** --lazy-series: a version of Gordeev's series (mmsim list-series) or 'latest' */
export function lazySeries(v: string): LazySeries {
  const s = resolve_lazy_series(v);
  if (s === null) throw new InvalidArgumentError(`--lazy-series must be one of ${Object.keys(LAZY_SERIES).join(', ')} or latest, got '${v}'`);
  return s;
}
