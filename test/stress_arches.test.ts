// `mmsim stress all --arch all`: a campaign over the library and the TLB-flush models in one
// command (the false-positive campaign of docs/robustness.md is this with the defaults).
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCampaign, type SeedResult } from '../src/tools/stress/stress.ts';
import { readRepro } from '../src/tools/repro/repro.ts';
import { mergeResults } from '../src/tools/stress/merge.ts';
import { SCENARIO_DIR } from '../src/engine/scenario.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mmsim-stress-arches-'));
});

const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 30000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

describe('mmsim stress over several arches', () => {
  it('each scenario runs on each arch: rows, result lines and repro files are named <scenario>@<arch>, with the arch in the repro', async () => {
    const out = join(dir, 'a.jsonl');
    const reproDir = join(dir, 'repros');
    const printed: string[] = [];
    const sum = await runCampaign({
      scenarios: ['munmap-vs-access', 'seed-nesting'], arches: ['x86', 'arm64'], seeds: 2, jobs: 2, out, reproDir, progress: false,
      print: (t) => printed.push(t), run: { cpus: 2, ops: 60, threads: 1, knobs: ['munmap.skip_flush'] },
    });
    expect(sum.scenarios.map((s) => s.scenario)).toEqual(['munmap-vs-access@x86', 'munmap-vs-access@arm64', 'seed-nesting@x86', 'seed-nesting@arm64']);
    const lines = (await readFile(out, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SeedResult);
    expect(lines.length).toBe(8);
    expect(new Set(lines.map((l) => l.scenario))).toEqual(new Set(sum.scenarios.map((s) => s.scenario)));
    // munmap.skip_flush is caught on both arches; every failure's repro names its arch and replays with it
    const failed = lines.filter((l) => !l.ok && l.scenario.startsWith('munmap-vs-access@'));
    expect(new Set(failed.map((l) => l.scenario))).toEqual(new Set(['munmap-vs-access@x86', 'munmap-vs-access@arm64']));
    for (const l of failed) {
      const arch = l.scenario.split('@')[1];
      expect(l.repro).toBe(join(reproDir, `repro-${l.scenario}-${l.seed}.json`));
      expect((await readRepro(l.repro!)).options.arch).toBe(arch);
    }
    expect(printed.join('\n')).toMatch(/^munmap-vs-access@arm64 +2 +2 /m);
    // a merge of the lines gives the same rows and a re-run line with the arch
    const m = mergeResults({ files: [out], reproDir });
    const rows = (x: { scenario: string; failed: number }[]) => x.map((s) => `${s.scenario} ${s.failed}`).sort();
    expect(rows(m.scenarios)).toEqual(rows(sum.scenarios));
  }, 120_000);

  it("'all' is every library scenario; --arch all is every model; a bad arch is one line naming the flag, exit 2", async () => {
    const lib = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.ts') || f.endsWith('.json'));
    const out = join(dir, 'all.jsonl');
    // shard 1 of 2 of a one-seed campaign runs nothing: every scenario is loaded and checked, none run
    const sum = await runCampaign({ scenarios: ['all'], arches: ['x86', 's390'], seeds: 1, jobs: 1, out, reproDir: dir, progress: false, print: () => {}, shard: '1/2' });
    expect(sum.runs).toBe(0);
    expect(sum.scenarios.length).toBe(2 * lib.length);
    expect(sum.scenarios.map((s) => s.scenario)).toContain('soak-mix@s390');
    const bad = await cli(['stress', 'munmap-vs-access', '--arch', 'x86,vax', '--seeds', '1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual([expect.stringMatching(/option '--arch <arch>' argument 'x86,vax' is invalid\. unknown arch 'vax'; one or more of x86, .*, or all$/)]);
    const help = await cli(['stress', '--help']);
    expect(help.stdout).toMatch(/'all':\s+every\s+library\s+scenario/);
    expect(help.stdout).toMatch(/or\s+'all'/);
  }, 180_000);
});
