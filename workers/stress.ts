// Piscina task module of `mmsim stress`: one seed of one scenario on a machine
// of its own. Returns a compact result (and a Repro when the seed failed); the
// campaign on the main thread writes the JSON line and the repro file.
import module from 'node:module';
import type { Scenario } from '../src/engine/scenario.ts';
import type { RunResult } from '../src/engine/machine.ts';

// V8's on-disk compile cache (workers/cpu.ts says why): before the simulator's module graph is imported
module.enableCompileCache?.();
const [{ loadScenario, ScenarioError }, { runScenario, runVerdict }, { makeRepro }] = await Promise.all([
  import('../src/engine/scenario.ts'), import('../src/engine/machine.ts'), import('../src/tools/repro/repro.ts'),
]);
import type { StressTask, TaskResult, TaskBadInput } from '../src/tools/stress/stress.ts';

const scenarios = new Map<string, Promise<Scenario>>();

export default async function stressTask(task: StressTask): Promise<TaskResult | TaskBadInput> {
  let s: Scenario;
  let r: RunResult;
  // inline by default: J tasks x one worker per CPU would oversubscribe the cores; a deterministic
  // run needs one thread per CPU (only one of them runs at a time), so it keeps the machine's default
  const inline = task.options.mode === 'deterministic' ? undefined : 1;
  const options = { ...task.options, threads: task.options.threads ?? inline, seed: task.seed };
  try {
    let p = scenarios.get(task.scenarioFile);
    if (!p) scenarios.set(task.scenarioFile, (p = loadScenario(task.scenarioFile)));
    s = await p;
    r = await runScenario(s, options);
  } catch (e) {
    // bad input (a CPU the machine lacks, an mmap that cannot fit) is the same for every seed: stop the campaign
    if (e instanceof ScenarioError) return { badInput: e.message };
    throw e; // anything else: the campaign counts this seed as a crash
  }
  const { exit, kind, message } = runVerdict(r);
  const mode = r.deterministic ? 'deterministic' : 'free';
  // a deterministic run carries its schedule: the repro then replays the exact interleaving
  const repro = makeRepro(s, { ...options, mode }, r, task.scenarioFile, r.deterministic?.schedule);
  return {
    scenario: r.scenario, seed: task.seed, ok: exit === 0, exit, kind, message,
    wallMs: Math.round(r.wallMs * 10) / 10, ops: r.stats.ops, shootdowns: r.stats.shootdowns,
    p50Ns: Math.round(r.latencyNs.p50), p99Ns: Math.round(r.latencyNs.p99),
    cpus: r.cpus, threads: r.threads, exec: r.mode, mode, knobs: r.knobs,
    repro: exit ? repro : undefined,
  };
}
