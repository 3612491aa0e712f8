// bin/mmsim.js, the package's bin entry, started by an old Node (the system's 20
// here, what `#!/usr/bin/env node` finds on a plain PATH): it re-executes
// bin/mmsim.ts with the pinned Node 24 and passes the exit code through, or,
// without a pinned Node, prints one line naming the Node it needs and exits 2.
import { describe, it, expect, beforeAll, onTestFinished } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const LAUNCHER = join(ROOT, 'bin', 'mmsim.js');

/** A Node older than 24 on this machine: /usr/bin/node or the first old one on PATH. */
function oldNode(): string | undefined {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'node'))];
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    try {
      const v = execFileSync(c, ['-v'], { timeout: 10_000, encoding: 'utf8' }).trim();
      if (Number(v.slice(1).split('.')[0]) < 24) return c;
    } catch {
      // not runnable
    }
  }
  return undefined;
}
const OLD = oldNode();

let cwd: string;
beforeAll(() => {
  cwd = mkdtempSync(join(tmpdir(), 'mmsim-launcher-'));
});

const run = (node: string, script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> =>
  new Promise((res) => {
    // from another directory, with only the system's directories on PATH (no node_modules/.bin)
    execFile(node, [script, ...args], { cwd, timeout: 60_000, env: { ...env, PATH: '/usr/bin:/bin' } }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, signal: err?.signal ?? null, stdout, stderr });
    });
  });

describe.skipIf(!OLD)(`bin/mmsim.js started by an old Node (${OLD ?? 'none found'})`, () => {
  it('the premise: that Node cannot load bin/mmsim.ts itself', async () => {
    const r = await run(OLD!, join(ROOT, 'bin', 'mmsim.ts'), ['list']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERR_UNKNOWN_FILE_EXTENSION|Unknown file extension "\.ts"/);
  });

  it('re-executes with the pinned Node: the run happens, its output and exit code come through (0 clean, 1 a violation, 2 bad input)', async () => {
    const [clean, bad, failing] = await Promise.all([
      run(OLD!, LAUNCHER, ['run', 'munmap-vs-access', '--cpus', '2', '--ops', '50', '--threads', '1', '--no-repro']),
      run(OLD!, LAUNCHER, ['run', 'munmap-vs-access', '--cpus', 'many']),
      run(OLD!, LAUNCHER, ['run', 'munmap-vs-access', '--cpus', '2', '--ops', '60', '--threads', '1', '--knob', 'munmap.skip_flush', '--seed', '1', '--no-repro']),
    ]);
    expect(clean.stderr).toBe('');
    expect(clean.stdout).toMatch(/^mmsim: munmap-vs-access on 2 CPUs \(x86\), seed \d+, inline \(1 host thread\)$/m);
    expect(clean.stdout).toMatch(/^ {2}violations +0$/m);
    expect(clean.code).toBe(0);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--cpus/);
    expect(failing.stdout).toMatch(/uaf-stale-tlb/);
    expect(failing.code).toBe(1);
  });

  it.skipIf(process.platform !== 'linux')('a signal sent to the launcher reaches the run and ends the launcher the same way', async () => {
    // a run far longer than the test (inline runs do not stop at --duration: use many operations)
    const child = spawn(OLD!, [LAUNCHER, 'run', 'munmap-vs-access', '--cpus', '2', '--threads', '1', '--ops', '100000000', '--no-repro'],
      { cwd, env: { ...process.env, PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const killer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    // the launcher's child has started once the pinned Node runs: wait until it is there, then stop the launcher
    const deadline = Date.now() + 40_000;
    let pinned = '';
    while (Date.now() < deadline && !pinned) {
      const kids = join('/proc', String(child.pid), 'task', String(child.pid), 'children');
      pinned = existsSync(kids) ? readFileSync(kids, 'utf8').trim() : '';
      if (!pinned) await new Promise((r) => setTimeout(r, 200));
    }
    onTestFinished(() => {
      // whatever happened above, nothing of this test keeps running
      for (const pid of [pinned, String(child.pid)]) {
        try {
          if (pid) process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
    expect(pinned).toMatch(/^\d+$/);
    expect(readFileSync(join('/proc', pinned, 'cmdline'), 'utf8')).toContain(join('node_modules', 'node', 'bin', 'node'));
    child.kill('SIGTERM');
    const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])));
    clearTimeout(killer);
    expect(signal).toBe('SIGTERM');
    expect(code).toBeNull();
    expect(out).not.toMatch(/violations/); // the long run did not finish
    expect(existsSync(join('/proc', pinned, 'cmdline'))).toBe(false); // and is gone, not orphaned
  });

  it('no pinned Node next to it: one line naming the Node it needs and a command that works, exit 2', async () => {
    const co = join(cwd, 'checkout');
    mkdirSync(join(co, 'bin'), { recursive: true });
    copyFileSync(LAUNCHER, join(co, 'bin', 'mmsim.js'));
    const r = await run(OLD!, join(co, 'bin', 'mmsim.js'), ['run', 'munmap-vs-access']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toEqual([expect.any(String), '']);
    expect(r.stderr).toMatch(new RegExp(`^mmsim: needs Node >= 24, this is Node v\\d+\\.\\d+\\.\\d+ \\(${OLD}\\) and the pinned Node is not installed .*; run 'npm ci' in ${co} .*<node-24> ${co}/bin/mmsim.ts run munmap-vs-access\\n$`));
  });

  it('a pinned Node that is itself too old does not loop: one line, exit 2', async () => {
    const r = await run(OLD!, LAUNCHER, ['list'], { ...process.env, MMSIM_LAUNCHED_BY: '/some/node' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mmsim: needs Node >= 24, this is Node v\d+[^\n]*started as the pinned Node by \/some\/node; [^\n]*\n$/);
  });

  it('a copy under node_modules (a global install of a tarball): one line, exit 2', async () => {
    const nm = join(cwd, 'node_modules', 'mmsim', 'bin');
    mkdirSync(nm, { recursive: true });
    copyFileSync(LAUNCHER, join(nm, 'mmsim.js'));
    const r = await run(OLD!, join(nm, 'mmsim.js'), ['list']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mmsim: runs from a checkout, not from a copy under node_modules [^\n]*\n$/);
  });
});

describe('bin/mmsim.js under Node >= 24', () => {
  it('runs mmsim in its own process and passes the exit code through', async () => {
    const [ok, bad] = await Promise.all([
      run(process.execPath, LAUNCHER, ['list']),
      run(process.execPath, LAUNCHER, ['run', 'no-such-scenario']),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^munmap-vs-access +/m);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('mmsim: no-such-scenario: no such scenario file\n');
  });
});
