// A reader of strace output (`strace -f -o FILE`, with or without pid prefixes,
// optionally with -t/-tt/-ttt/-r timestamps and -T durations): one event per
// system call, signal or exit, in log order. `<unfinished ...>` and
// `<... NAME resumed>` halves are joined into one call. Arguments are split at
// top-level commas (strings, brackets and braces kept whole) and decoded on
// demand: numbers, NULL, symbolic flags (PROT_*, MAP_*, MREMAP_*, MADV_*).
// Anything that is not strace's line grammar is an error naming the line.

export class StraceParseError extends Error {
  readonly line: number;
  constructor(file: string, line: number, msg: string) {
    super(`${file}:${line}: ${msg}`);
    this.line = line;
  }
}

export interface StraceResult {
  /** the value (address, 0, fd, pid...); null for `= ?` */
  value: number | null;
  /** the error name of `= -1 ENOMEM (...)` */
  errno?: string;
  /** the result as written, for messages */
  text: string;
}

export interface StraceCall {
  kind: 'call';
  /** 1-based line of the call (where its arguments start) */
  line: number;
  /** line of its result: a later one when the call was resumed */
  endLine: number;
  pid: number;
  name: string;
  args: string[];
  /** undefined: unfinished and never resumed (the task died in it) */
  ret?: StraceResult;
  text: string;
}

export interface StraceSignal {
  kind: 'signal';
  line: number;
  pid: number;
  sig: string;
  /** the siginfo fields (si_code, si_addr, ...) */
  info: Record<string, string>;
  text: string;
}

export interface StraceExit {
  kind: 'exit';
  line: number;
  pid: number;
  /** `exited with N`, `killed by SIG`, `superseded by execve` */
  how: 'exited' | 'killed' | 'superseded';
  code?: number;
  sig?: string;
  text: string;
}

export type StraceEvent = StraceCall | StraceSignal | StraceExit;

export interface StraceLog {
  events: StraceEvent[];
  lines: number;
  /** whether lines carried pid prefixes */
  pids: boolean;
}

/** The pid given to lines without a prefix (strace without -f). */
export const NO_PID = 0;

const PREFIX = /^(?:\[pid\s+(\d+)\]\s*|(\d+)\s+)?(?:(?:\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)\s+)?(.*)$/;
const RESULT = /^(.*)\)\s+=\s+(-?\d+|0x[0-9a-fA-F]+|\?)(?:<[^>]*>)?(?:\s+(E[A-Z0-9]+)\b.*?|\s+\(.*\)|\s+<unavailable>)?\s*(?:<\d+(?:\.\d+)?>)?\s*$/s;
const UNFINISHED = /^(.*?)\s*<unfinished \.\.\.>\s*$/;
const RESUMED = /^<\.\.\.\s+([A-Za-z_][\w]*)\s+resumed>\s?(.*)$/;
const CALL = /^([A-Za-z_][\w]*|\?+)\s?\((.*)$/s;

/** Split an argument list at top-level commas. */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inStr) {
      cur += c;
      if (c === '\\' && i + 1 < s.length) cur += s[++i];
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim() !== '' || out.length > 0) out.push(cur.trim());
  return out;
}

/** Decode a C string literal as strace prints it ("...", possibly followed by ... when truncated). */
export function parseCString(s: string): string | undefined {
  const m = /^"((?:[^"\\]|\\.)*)"(?:\.\.\.)?$/s.exec(s.trim());
  if (!m) return undefined;
  return m[1].replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', t: '\t', r: '\r', v: '\v', f: '\f', a: '\x07', b: '\b', '"': '"', '\\': '\\' } as Record<string, string>)[e] ?? e;
  });
}

function parseResult(v: string, errno: string | undefined, text: string): StraceResult {
  if (v === '?') return { value: null, text };
  const n = Number(BigInt.asIntN(64, BigInt(v)));
  if (n < 0 && errno) return { value: n, errno, text };
  return { value: n, text };
}

/** `) = RESULT...` at the end of s: [arguments before it, result], or undefined. */
function splitResult(s: string): [string, StraceResult] | undefined {
  const m = RESULT.exec(s);
  if (!m) return undefined;
  const text = s.slice(m[1].length + 1).replace(/^\s+=\s+/, '').replace(/\s*<\d+(?:\.\d+)?>\s*$/, '').trim();
  return [m[1], parseResult(m[2], m[3], text)];
}

/** Parse a whole strace log. Throws StraceParseError naming the first unreadable line. */
export function parseStrace(text: string, file = 'input'): StraceLog {
  const lines = text.split(/\r?\n/);
  const events: StraceEvent[] = [];
  const pending = new Map<number, StraceCall[]>();
  let sawPid = false;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i];
    if (raw.trim() === '') continue;
    const pm = PREFIX.exec(raw.trimEnd())!;
    const pid = pm[1] !== undefined ? Number(pm[1]) : pm[2] !== undefined ? Number(pm[2]) : NO_PID;
    if (pid !== NO_PID) sawPid = true;
    const body = pm[3].trim();
    const bad = (msg: string): never => {
      throw new StraceParseError(file, lineNo, `${msg}: ${raw.length > 120 ? raw.slice(0, 117) + '...' : raw}`);
    };
    if (body.startsWith('strace: ')) continue; // strace's own notes (attach/detach), when stderr was merged in
    if (body.startsWith('---')) {
      const sm = /^---\s+(SIG[A-Z0-9+]+|stopped by (SIG\w+))\s*(?:\{(.*)\})?\s*---$/.exec(body);
      if (!sm) bad('unreadable signal line');
      const info: Record<string, string> = {};
      for (const kv of splitArgs(sm![3] ?? '')) {
        const eq = kv.indexOf('=');
        if (eq > 0) info[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim();
      }
      events.push({ kind: 'signal', line: lineNo, pid, sig: sm![2] ?? sm![1], info, text: raw });
      continue;
    }
    if (body.startsWith('+++')) {
      const em = /^\+\+\+\s+(?:exited with (-?\d+)|killed by (SIG\w+)(?: \(core dumped\))?|(superseded by execve))\s+\+\+\+$/.exec(body);
      if (!em) bad('unreadable exit line');
      if (em![1] !== undefined) events.push({ kind: 'exit', line: lineNo, pid, how: 'exited', code: Number(em![1]), text: raw });
      else if (em![2] !== undefined) events.push({ kind: 'exit', line: lineNo, pid, how: 'killed', sig: em![2], text: raw });
      else events.push({ kind: 'exit', line: lineNo, pid, how: 'superseded', text: raw });
      continue;
    }
    const rm = RESUMED.exec(body);
    if (rm) {
      const name = rm[1];
      const list = pending.get(pid);
      const idx = list ? list.findIndex((c) => c.name === name) : -1;
      if (idx < 0) bad(`'${name}' resumed, but pid ${pid} has no unfinished ${name} call`);
      const call = list!.splice(idx, 1)[0];
      const rest = rm[2];
      // the rest of the arguments, then ") = result"
      if (UNFINISHED.test(rest)) {
        // resumed and unfinished again (strace does this for long calls): keep waiting
        const um = UNFINISHED.exec(rest)!;
        call.args = joinArgs(call.args, um[1]);
        list!.push(call);
        continue;
      }
      const res = splitResult(rest);
      if (!res) bad(`unreadable result of the resumed ${name} call`);
      call.args = joinArgs(call.args, res![0]);
      call.ret = res![1];
      call.endLine = lineNo;
      continue;
    }
    const cm = CALL.exec(body);
    if (!cm) bad('not a line of strace output');
    const name = cm![1];
    const after = cm![2];
    const um = UNFINISHED.exec(after);
    if (um) {
      const call: StraceCall = { kind: 'call', line: lineNo, endLine: lineNo, pid, name, args: splitArgs(um[1]), text: raw };
      if (!pending.has(pid)) pending.set(pid, []);
      pending.get(pid)!.push(call);
      events.push(call);
      continue;
    }
    const res = splitResult(after);
    if (!res) bad(`no result in this ${name} call`);
    events.push({ kind: 'call', line: lineNo, endLine: lineNo, pid, name, args: splitArgs(res![0]), ret: res![1], text: raw });
  }
  return { events, lines: lines.length, pids: sawPid };
}

/** Arguments before `<unfinished ...>` and after `<... resumed>` make one list. */
function joinArgs(first: string[], rest: string): string[] {
  const more = splitArgs(rest.replace(/^\s*,/, ''));
  if (first.length === 0) return more;
  if (more.length === 0) return first;
  if (first[first.length - 1] === '') return [...first.slice(0, -1), ...more]; // cut after a comma
  if (/^\s*,/.test(rest)) return [...first, ...more]; // cut before a comma
  // cut inside an argument: the two halves make one
  return [...first.slice(0, -1), first[first.length - 1] + ' ' + more[0], ...more.slice(1)];
}

// ---- decoding arguments --------------------------------------------------------

export const PROT_FLAGS: Record<string, number> = {
  PROT_NONE: 0, PROT_READ: 1, PROT_WRITE: 2, PROT_EXEC: 4, PROT_SEM: 8, PROT_GROWSDOWN: 0x01000000, PROT_GROWSUP: 0x02000000,
};
export const MAP_FLAGS: Record<string, number> = {
  MAP_FILE: 0, MAP_SHARED: 0x01, MAP_PRIVATE: 0x02, MAP_SHARED_VALIDATE: 0x03, MAP_DROPPABLE: 0x08, MAP_FIXED: 0x10,
  MAP_ANONYMOUS: 0x20, MAP_ANON: 0x20, MAP_32BIT: 0x40, MAP_GROWSDOWN: 0x100, MAP_DENYWRITE: 0x800,
  MAP_EXECUTABLE: 0x1000, MAP_LOCKED: 0x2000, MAP_NORESERVE: 0x4000, MAP_POPULATE: 0x8000, MAP_NONBLOCK: 0x10000,
  MAP_STACK: 0x20000, MAP_HUGETLB: 0x40000, MAP_SYNC: 0x80000, MAP_FIXED_NOREPLACE: 0x100000, MAP_UNINITIALIZED: 0x4000000,
  MAP_HUGE_SHIFT: 26,
};
export const MREMAP_FLAGS: Record<string, number> = { MREMAP_MAYMOVE: 1, MREMAP_FIXED: 2, MREMAP_DONTUNMAP: 4 };
export const MADV_NAMES: Record<string, number> = {
  MADV_NORMAL: 0, MADV_RANDOM: 1, MADV_SEQUENTIAL: 2, MADV_WILLNEED: 3, MADV_DONTNEED: 4, MADV_FREE: 8, MADV_REMOVE: 9,
  MADV_DONTFORK: 10, MADV_DOFORK: 11, MADV_MERGEABLE: 12, MADV_UNMERGEABLE: 13, MADV_HUGEPAGE: 14, MADV_NOHUGEPAGE: 15,
  MADV_DONTDUMP: 16, MADV_DODUMP: 17, MADV_WIPEONFORK: 18, MADV_KEEPONFORK: 19, MADV_COLD: 20, MADV_PAGEOUT: 21,
  MADV_POPULATE_READ: 22, MADV_POPULATE_WRITE: 23, MADV_DONTNEED_LOCKED: 24, MADV_COLLAPSE: 25,
  MADV_HWPOISON: 100, MADV_SOFT_OFFLINE: 101, MADV_GUARD_INSTALL: 102, MADV_GUARD_REMOVE: 103,
};

export class ArgError extends Error {}

/** A number as strace prints it: decimal, 0x hex, 0 octal, NULL; -1 stays -1. */
export function parseNum(s: string): number {
  const t = s.trim();
  if (t === 'NULL') return 0;
  if (/^-?0x[0-9a-fA-F]+$/.test(t)) return Number(BigInt(t.replace('-', '')) * (t.startsWith('-') ? -1n : 1n));
  if (/^-?0[0-7]+$/.test(t)) return (t.startsWith('-') ? -1 : 1) * parseInt(t.replace('-', ''), 8);
  if (/^-?\d+$/.test(t)) return Number(BigInt(t));
  throw new ArgError(`'${t}' is not a number`);
}

/** Symbolic flags (A|B|0x10|21<<MAP_HUGE_SHIFT) against a table; unknown names are an error. */
export function parseFlags(s: string, table: Record<string, number>): number {
  let v = 0;
  for (const part of s.trim().split('|')) {
    const p = part.trim();
    const sh = /^(\d+)<<(\w+)$/.exec(p);
    if (sh) {
      if (!(sh[2] in table)) throw new ArgError(`unknown flag '${sh[2]}'`);
      v += Number(sh[1]) * 2 ** table[sh[2]];
      continue;
    }
    if (p in table) v += table[p];
    else if (/^(0x[0-9a-fA-F]+|\d+)$/.test(p)) v += parseNum(p);
    else throw new ArgError(`unknown flag '${p}'`);
  }
  return v;
}

/** The fd of an argument, with -y's `3</path>` decoration dropped. */
export function parseFd(s: string): number {
  return parseNum(s.replace(/<.*>$/, ''));
}
