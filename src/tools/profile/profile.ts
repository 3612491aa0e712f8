// `npm run profile -- <tool> <scenario> [mmsim run flags]`: profile one run of a
// scenario with clinic (flame, doctor, bubbleprof, heapprofiler) or take a V8 CPU
// profile of every host thread and draw each as a flame graph with 0x (cpu).
//
// A driver of its own (not shell in package.json) because every tool needs the
// same handful of fixes, found by experiment with clinic 13 on Node 24.21:
//   - NO_INSIGHT=1: clinic otherwise asks to send usage statistics through a
//     promisified insight.askPermission that never calls back (insight >= 0.11),
//     the event loop empties and clinic exits 0 before starting the program;
//   - the program runs with this Node (process.execPath, the pinned one), never
//     the `node` a plain shell finds first on PATH (the system's 20 cannot load .ts);
//   - bin/mmsim.ts ends with process.exitCode, not process.exit(), so the
//     beforeExit handlers of doctor, bubbleprof and heapprofiler write their data;
//   - MMSIM_PROFILER=<tool>: machine.ts starts the CPU worker threads with
//     NODE_OPTIONS cleared, or every thread would run clinic's preloads and
//     write the same data file (doctor: "Decoded message is not valid");
//   - --import js_names.ts: every .ts module is named *.ts.js, which clinic flame
//     and 0x need to show a frame as application code instead of hiding it as
//     "V8 runtime" (so move_ptes, flush_tlb_mm_range, walk appear);
//   - heapprofiler: --import heap_all.ts, or the sampling heap profile taken at
//     exit holds only objects still alive then (none of a finished run's: the
//     report was empty); with it, the samples of freed objects are kept;
//   - a sensible execution mode per tool: flame and heapprofiler inline
//     (--threads 1: one isolate holds the whole simulated kernel), doctor and
//     bubbleprof threaded (the default: the main thread coordinates the CPU
//     threads; worker threads are invisible to clinic). A --threads or --mode
//     given by the user wins.
// It lives in src/tools/ (not scripts/) because it is a tool of the project like
// stress and repro, type-checked with the rest.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ENTRY = join(ROOT, 'bin', 'mmsim.ts');
const HOOK = join(ROOT, 'src', 'tools', 'profile', 'js_names.ts');
const HEAP_ALL = join(ROOT, 'src', 'tools', 'profile', 'heap_all.ts');

export const TOOLS = {
  flame: { inline: true, what: 'clinic flame: where the CPU time goes, the simulated kernel\'s functions by name (inline run)' },
  doctor: { inline: false, what: 'clinic doctor: CPU, memory, event-loop delay and handles of the main thread (threaded run)' },
  bubbleprof: { inline: false, what: 'clinic bubbleprof: asynchronous activity of the main thread (threaded run)' },
  heapprofiler: { inline: true, what: 'clinic heapprofiler: allocations by function (inline run)' },
  cpu: { inline: false, what: 'V8 CPU profile of every host thread (--cpu-prof), each drawn as a flame graph by 0x' },
} as const;
export type Tool = keyof typeof TOOLS;

const USAGE = `usage: npm run profile -- [--dest DIR] <${Object.keys(TOOLS).join('|')}> <scenario> [mmsim run flags]`;

export class ProfileUsageError extends Error {}

export interface ProfilePlan {
  tool: Tool;
  /** the arguments of `mmsim run` */
  runArgs: string[];
  /** where the reports go */
  dest: string;
}

/** Reads `<tool> <scenario> [run flags]` (bad input: ProfileUsageError, one line). */
export function planProfile(argv: string[]): ProfilePlan {
  let dest = join(ROOT, 'profiles');
  if (argv[0] === '--dest' || argv[0]?.startsWith('--dest=')) {
    const d = argv[0] === '--dest' ? argv[1] : argv[0].slice('--dest='.length);
    if (!d) throw new ProfileUsageError(`--dest needs a directory; ${USAGE}`);
    dest = resolve(d);
    argv = argv.slice(argv[0] === '--dest' ? 2 : 1);
  }
  const [tool, scenario, ...flags] = argv;
  if (!tool) throw new ProfileUsageError(`no tool given; ${USAGE}`);
  if (!(tool in TOOLS)) throw new ProfileUsageError(`unknown tool '${tool}'; ${USAGE}`);
  if (!scenario || scenario.startsWith('-')) throw new ProfileUsageError(`no scenario given; ${USAGE}`);
  if (flags.includes('--cpu-prof')) throw new ProfileUsageError(`--cpu-prof: the profile tools choose their own profiling; use 'npm run profile -- cpu ${scenario}'`);
  const t = tool as Tool;
  const chosen = flags.some((f) => f === '--threads' || f.startsWith('--threads=') || f === '--mode' || f.startsWith('--mode='));
  const runArgs = ['run', scenario, ...flags, ...(TOOLS[t].inline && !chosen ? ['--threads', '1'] : [])];
  return { tool: t, runArgs, dest };
}

/** The environment of a profiled run: no prompt, this Node first on PATH, CPU workers without clinic's preloads. */
function profileEnv(tool: Tool): NodeJS.ProcessEnv {
  return {
    ...process.env, NO_INSIGHT: '1', MMSIM_PROFILER: tool,
    PATH: [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter),
  };
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: 'inherit', env, cwd });
    child.on('error', fail);
    child.on('exit', (code, signal) => done(code ?? (signal ? 128 : 1)));
  });
}

function newest(dir: string, suffix: string, since: number): string | undefined {
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).mtimeMs >= since)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

/** A .cpuprofile with its .ts script URLs renamed *.ts.js (what js_names.ts does for clinic), so 0x shows them as app code. */
export function renameTsFrames(profile: { nodes: { callFrame: { url: string } }[] }): number {
  let n = 0;
  for (const node of profile.nodes) {
    const u = node.callFrame.url;
    if (u.startsWith('file:') && u.endsWith('.ts')) {
      node.callFrame.url = u + '.js';
      n++;
    }
  }
  return n;
}

/** A path as the user can open it: relative to the current directory when inside it. */
function shown(p: string): string {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
}

const CLINIC_TOOL: Record<Exclude<Tool, 'cpu'>, string> = { flame: 'flame', doctor: 'doctor', bubbleprof: 'bubbleprof', heapprofiler: 'heapprofiler' };

/** Runs the plan; returns the HTML files written (empty when the tool produced none). */
export async function profile(p: ProfilePlan, log: (line: string) => void = (l) => process.stdout.write(l + '\n')): Promise<{ code: number; html: string[] }> {
  mkdirSync(p.dest, { recursive: true });
  const env = profileEnv(p.tool);
  const node = process.execPath;
  const since = Date.now() - 1000;
  log(`mmsim profile: ${TOOLS[p.tool].what}`);
  log(`  mmsim ${p.runArgs.join(' ')}`);
  if (p.tool === 'cpu') {
    const dir = join(p.dest, `cpu-${basename(p.runArgs[1]).replace(/\.(ts|json)$/, '')}-${new Date(since + 1000).toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(dir, { recursive: true });
    const code = await run(node, [ENTRY, ...p.runArgs, '--cpu-prof', dir], env, process.cwd());
    const profiles = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
    if (profiles.length === 0) {
      log(`mmsim profile: no CPU profile in ${dir} (--cpu-prof profiles the worker threads: give the run --threads 2 or more)`);
      return { code: code || 1, html: [] };
    }
    const html: string[] = [];
    for (const f of profiles) {
      // 0x writes flamegraph.html next to the profile: one folder per host thread
      const sub = join(dir, f.replace(/\.cpuprofile$/, ''));
      mkdirSync(sub, { recursive: true });
      const prof = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      renameTsFrames(prof);
      writeFileSync(join(sub, f), JSON.stringify(prof));
      const zx = await run(node, [join(ROOT, 'node_modules', '0x', 'cmd.js'), '--visualize-cpu-profile', join(sub, f)], env, process.cwd());
      const out = newest(sub, '.html', since);
      if (zx === 0 && out) html.push(out);
    }
    for (const h of html) log(`mmsim profile: flame graph ${shown(h)}`);
    return { code: html.length === profiles.length ? code : code || 1, html };
  }
  const clinic = join(ROOT, 'node_modules', 'clinic', 'bin.js');
  const hook = p.tool === 'flame' ? ['--import', HOOK] : p.tool === 'heapprofiler' ? ['--import', HEAP_ALL] : [];
  const inline = p.runArgs.some((a, i) => a === '--threads=1' || (a === '--threads' && p.runArgs[i + 1] === '1'));
  if (TOOLS[p.tool].inline && !inline) log('  note: a threaded run; clinic sees only the main thread, not the CPU worker threads');
  const code = await run(node, [clinic, CLINIC_TOOL[p.tool], '--open=false', '--dest', p.dest, '--', node, ...hook, ENTRY, ...p.runArgs], env, process.cwd());
  const out = newest(p.dest, `.clinic-${CLINIC_TOOL[p.tool]}.html`, since);
  if (!out) {
    log(`mmsim profile: clinic ${p.tool} wrote no HTML report (exit ${code})`);
    return { code: code || 1, html: [] };
  }
  log(`mmsim profile: report ${shown(out)} (open it in a browser)`);
  return { code, html: [out] };
}

export async function main(argv: string[]): Promise<number> {
  let plan: ProfilePlan;
  try {
    plan = planProfile(argv);
  } catch (e) {
    if (e instanceof ProfileUsageError) {
      process.stderr.write(`mmsim profile: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const r = await profile(plan);
  return r.html.length ? 0 : r.code || 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
