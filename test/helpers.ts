// Unit tests drive an inline machine: every CPU on the test's own thread.
export { inlineMachine as testMachine, type InlineMachine as TestMachine } from '../src/engine/inline.ts';

import { expect } from 'vitest';
import type { RunResult } from '../src/engine/machine.ts';
import { summary } from '../src/report/summary.ts';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A run that finished with no violation, no hang or crash, and clean audits (and, if asked, no failed syscall). */
export function expectClean(r: RunResult, o: { noSyscallErrors?: boolean } = {}): void {
  const why = summary(r);
  expect(r.hang, why).toBeUndefined();
  expect(r.crash, why).toBeUndefined();
  expect(r.violations.map((v) => v.message), why).toEqual([]);
  expect(r.audit.problems, why).toEqual([]);
  expect(r.teardownAudit.problems, why).toEqual([]);
  if (o.noSyscallErrors) expect(r.syscallErrors, why).toBe(0);
}

// ---- the race on one screen (issue #14 item 5) -------------------------------------------------

/** A headless Chromium on this machine ($CHROMIUM, else chromium / chromium-browser / google-chrome on PATH), or null. */
export function findChromium(): string | null {
  const cands = [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome'].filter((c): c is string => !!c);
  for (const c of cands) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 20_000 });
    if (r.status === 0) return c;
  }
  return null;
}

/**
 * Where the top section of a report ends as a browser lays it out. Appended to a copy of the report
 * (the report itself stays a static page without scripts): the root element gets
 * data-race-section ('race', 'finding' when the first violation is not a stale use, or 'none'),
 * data-race-bottom (where it ends, px from the top of the page), data-race-cpus (its CPU columns),
 * data-race-roles (the roles of its rows: fill, syscall, change, zap, free, flush, use, ...) and
 * data-viewport (the window's width x height).
 */
const LAYOUT_PROBE = `<script>(() => { const d = document.documentElement; const r = document.getElementById('race') ?? document.getElementById('finding');
d.dataset.raceSection = r ? r.id : 'none';
d.dataset.raceBottom = r ? String(Math.ceil(r.getBoundingClientRect().bottom + scrollY)) : 'none';
d.dataset.raceCpus = r ? String(r.querySelectorAll('table.race thead th').length - 1) : '0';
d.dataset.raceRoles = r ? [...new Set([...r.querySelectorAll('table.race tbody tr')].map((t) => t.className.replace('race-', '')))].join(' ') : '';
d.dataset.viewport = innerWidth + 'x' + innerHeight; })();</script>`;

/**
 * `mmsim bugs run ID --out-dir DIR`, then the report it wrote rendered by headless Chromium at
 * 1400x900 (--dump-dom) with the layout probe above: where its race (or finding) ends and the
 * height of the first screen. report: null when the run wrote none (a hang, a crash, a leak found
 * by the audit: nothing to replay).
 */
export function raceOnScreen(chromium: string, id: string, dir: string): { exit: number | null; output: string; report: string | null; raceBottom: number | null; raceCpus: number; roles: string[]; section: string; screen: number } {
  const run = spawnSync(process.execPath, ['bin/mmsim.ts', 'bugs', 'run', id, '--out-dir', dir], { encoding: 'utf8', timeout: 600_000 });
  const output = `${run.stdout}${run.stderr}`;
  const report = readdirSync(dir).find((f) => f.startsWith('report-') && f.endsWith('.html')) ?? null;
  if (!report) return { exit: run.status, output, report: null, raceBottom: null, raceCpus: 0, roles: [], section: 'none', screen: 0 };
  const probed = join(dir, `probed-${report}`);
  writeFileSync(probed, readFileSync(join(dir, report), 'utf8').replace('</body></html>', `${LAYOUT_PROBE}</body></html>`));
  const dom = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1400,900', '--dump-dom', pathToFileURL(probed).href], { encoding: 'utf8', timeout: 120_000 });
  const html = /<html[^>]*>/.exec(dom.stdout)?.[0] ?? '';
  const bottom = /data-race-bottom="([^"]+)"/.exec(html)?.[1];
  const screen = Number(/data-viewport="\d+x(\d+)"/.exec(html)?.[1] ?? 0);
  const raceCpus = Number(/data-race-cpus="(\d+)"/.exec(html)?.[1] ?? 0);
  const section = /data-race-section="([^"]+)"/.exec(html)?.[1] ?? 'none';
  const roles = (/data-race-roles="([^"]*)"/.exec(html)?.[1] ?? '').split(' ').filter(Boolean);
  return { exit: run.status, output, report: join(dir, report), raceBottom: bottom === undefined || bottom === 'none' ? null : Number(bottom), raceCpus, roles, section, screen };
}
