import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 60000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

describe('mmsim CLI', () => {
  it('runs a scenario by name and exits 0 when clean', async () => {
    const r = await run(['run', 'munmap-vs-access', '--cpus', '2', '--ops', '500', '--seed', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/munmap-vs-access on 2 CPUs \(x86\), seed 3/);
    expect(r.stdout).toMatch(/result +clean/);
  });

  it('exits 1 on a violation', async () => {
    // deterministic: the catch must not depend on the machine's load (a free-mode run of 20,000
    // ops with --delay 0.05 missed it once in a suite run beside a campaign, eighth session)
    const r = await run(['run', 'scenarios/munmap-vs-access.ts', '--cpus', '2', '--ops', '2000', '--mode', 'deterministic', '--seed', '1', '--knob', 'munmap.free_before_flush']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\[uaf-stale-tlb\]/);
  });

  const bad: [string, string[], RegExp][] = [
    ['an unknown flag', ['run', 'munmap-vs-access', '--cpuz', '4'], /unknown option '--cpuz'/],
    ['a non-numeric --cpus', ['run', 'munmap-vs-access', '--cpus', 'four'], /--cpus must be a whole number, got 'four'/],
    ['too many CPUs', ['run', 'munmap-vs-access', '--cpus', '300'], /--cpus must be between 1 and 256/],
    ['a missing scenario file', ['run', 'scenarios/nope.ts'], /scenarios\/nope\.ts: no such scenario file/],
    ['an unknown knob', ['run', 'munmap-vs-access', '--knob', 'nope'], /unknown bug knob 'nope'/],
    ['an unknown arch', ['run', 'munmap-vs-access', '--arch', 'vax'], /'vax' is invalid/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [what, args, msg] of bad) {
    it(`${what}: one-line error, exit 2`, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    });
  }

  it('a bad scenario file: the error names the file and the field path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mmsim-'));
    const f = join(dir, 'bad.json');
    await writeFile(f, JSON.stringify({
      name: 'bad', description: 'x', machine: { cpus: 'many' },
      processes: [{ name: 'p', regions: [{ name: 'r', pages: 4 }], threads: [{ name: 't', cpus: 'all', program: [{ op: 'access', region: 'r', mode: 'sideways' }] }] }],
    }));
    const r = await run(['run', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${f}: machine.cpus:`);
    expect(r.stderr).toContain(`${f}: processes.0.threads.0.program.0.mode:`);
    const g = join(dir, 'bad2.json');
    await writeFile(g, JSON.stringify({ name: 'b', description: 'x', processes: [{ name: 'p', threads: [{ name: 't', cpus: 0, program: [{ op: 'access', region: 'nope' }] }] }] }));
    const r2 = await run(['run', g]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/bad2\.json: processes\.0\.threads\.0\.program\.0\.region: no region 'nope' in process 'p'/);
  });

  it('lists the scenario library and the knobs', async () => {
    const l = await run(['list']);
    expect(l.code).toBe(0);
    expect(l.stdout).toMatch(/^munmap-vs-access +readers\/writers on all CPUs/m);
    const k = await run(['knobs']);
    expect(k.stdout).toMatch(/^munmap\.free_before_flush /m);
  });
});
