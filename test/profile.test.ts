// `npm run profile`: clinic flame on a short inline run of seed-move-ptes writes an
// HTML flame graph in which the simulated kernel's functions (move_ptes, the mremap
// path) are application frames, not hidden as "V8 runtime" (which is what they are
// without src/tools/profile/js_names.ts: clinic takes only *.js URLs for app code).
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { planProfile, ProfileUsageError, renameTsFrames, main } from '../src/tools/profile/profile.ts';

const ROOT = resolve(import.meta.dirname, '..');
let dest: string;
beforeAll(() => {
  dest = mkdtempSync(join(tmpdir(), 'mmsim-profile-'));
});

describe('npm run profile', () => {
  it('flame on a tiny inline run: an HTML report whose app frames include move_ptes of src/mm/mremap.ts', async () => {
    // 20,000 ops is ~0.7 s of simulated kernel: clinic flame samples the stack about once
    // a millisecond, and a 150-op run (~30 ms) once had no move_ptes sample at all on a
    // loaded CI machine (stop 17).
    // through npm, as a user types it (npm puts the pinned Node first on PATH; the driver must not need it)
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
      execFile('npm', ['run', '-s', 'profile', '--', '--dest', dest, 'flame', 'seed-move-ptes', '--cpus', '2', '--ops', '20000'],
        { cwd: ROOT, timeout: 150_000, env: { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH}` } }, (err, stdout, stderr) => {
          res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
        });
    });
    expect(r.stdout).not.toMatch(/insight|usage statistics/i); // no prompt
    expect(r.stdout).toMatch(/^ {2}mmsim run seed-move-ptes --cpus 2 --ops 20000 --threads 1$/m); // inline by default
    const m = /^mmsim profile: report (\S+\.clinic-flame\.html) \(open it in a browser\)$/m.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(r.code).toBe(0);
    const html = readFileSync(m![1], 'utf8');
    // the frames are in the embedded tree as JSON objects: name, fileName, functionName, ..., category
    const frame = (fn: string): string | undefined =>
      new RegExp(`"functionName":"${fn}","lineNumber":\\d+,"columnNumber":\\d+,"target":"[^"]*","type":"[^"]*","category":"([a-z-]+)"`).exec(html)?.[1];
    expect(html).toMatch(/"name":"move_ptes file:\/\/\/[^"]*\/src\/mm\/mremap\.ts\.js:\d+:\d+"/);
    expect(frame('move_ptes')).toBe('app');
    expect(frame('move_page_tables')).toBe('app');
  }, 180_000);

  it('plans: flame and heapprofiler inline unless --threads or --mode is given; doctor threaded; bad input is one line', async () => {
    expect(planProfile(['flame', 'munmap-vs-access', '--ops', '10']).runArgs).toEqual(['run', 'munmap-vs-access', '--ops', '10', '--threads', '1']);
    expect(planProfile(['flame', 'munmap-vs-access', '--threads', '2']).runArgs).toEqual(['run', 'munmap-vs-access', '--threads', '2']);
    expect(planProfile(['heapprofiler', 'x', '--mode', 'deterministic']).runArgs).toEqual(['run', 'x', '--mode', 'deterministic']);
    expect(planProfile(['doctor', 'munmap-vs-access']).runArgs).toEqual(['run', 'munmap-vs-access']);
    expect(planProfile(['--dest', '/tmp/p', 'cpu', 'x']).dest).toBe('/tmp/p');
    expect(() => planProfile(['perf', 'x'])).toThrow(ProfileUsageError);
    expect(() => planProfile(['flame'])).toThrow(/no scenario given; usage: npm run profile -- \[--dest DIR\] <flame\|doctor\|bubbleprof\|heapprofiler\|cpu> <scenario>/);
    expect(() => planProfile(['flame', 'x', '--cpu-prof', 'd'])).toThrow(/npm run profile -- cpu x/);
    const err: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => { err.push(s); return true; }) as typeof process.stderr.write;
    try {
      expect(await main(['nope', 'x'])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(err).toEqual([expect.stringMatching(/^mmsim profile: unknown tool 'nope'; usage: .*\n$/)]);
  });

  it('cpu: .ts frames of a .cpuprofile are renamed *.ts.js for 0x, nothing else', () => {
    const p = { nodes: [
      { callFrame: { url: 'file:///a/src/mm/mremap.ts' } }, { callFrame: { url: 'node:internal/x' } },
      { callFrame: { url: '' } }, { callFrame: { url: 'file:///a/node_modules/piscina/dist/main.js' } },
    ] };
    expect(renameTsFrames(p)).toBe(1);
    expect(p.nodes.map((n) => n.callFrame.url)).toEqual(['file:///a/src/mm/mremap.ts.js', 'node:internal/x', '', 'file:///a/node_modules/piscina/dist/main.js']);
    expect(existsSync(join(ROOT, 'node_modules', '0x', 'cmd.js'))).toBe(true);
  });
});
