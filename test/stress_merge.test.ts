// `mmsim stress merge`: one campaign run whole and as 4 shards in 4 separate
// processes; the merge of the shards' JSON lines gives the campaign's table,
// failing seeds and exit code. Inline runs are deterministic per seed (same seed,
// same ops, shootdowns, verdict and message), so everything but the timing columns
// must be equal; merging the unsharded campaign's own lines must reproduce its
// table exactly, timing columns included (same numbers, same arithmetic).
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CampaignError, type SeedResult } from '../src/tools/stress/stress.ts';
import { formatMerge, mergeResults } from '../src/tools/stress/merge.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mmsim-merge-'));
});

const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 45_000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

// munmap.skip_flush on 2 CPUs, 40 ops, inline: most seeds fail with a stale-TLB UAF, some stay clean
const CAMPAIGN = ['stress', 'munmap-vs-access', '--seeds', '8', '--cpus', '2', '--ops', '40', '--knob', 'munmap.skip_flush', '--jobs', '1'];

/** The table's rows without the timing columns, failing-seed lines with repro paths cut to the file name. */
function stable(table: string): string[] {
  const out: string[] = [];
  for (const l of table.split('\n')) {
    const cells = l.split(/ {2,}/);
    if (/^munmap-vs-access +\d/.test(l)) out.push([cells[0], cells[1], cells[2], cells[cells.length - 1]].join(' | '));
    else if (/^ {2}munmap-vs-access seed \d+: /.test(l)) out.push(l);
    else if (/^ {4}repro /.test(l)) out.push(`    repro ${basename(l.trim().slice(6))}`);
    else if (/^ {2}first failure/.test(l)) out.push(l.replace(/\/\S*\/(repro-\S+\.json)/g, '$1'));
  }
  return out;
}

const tableOf = (stdout: string): string => stdout.slice(stdout.indexOf('scenario '));

describe('mmsim stress merge', () => {
  it('4 shards in 4 processes merged give the unsharded campaign: table, failing seeds, repro files, exit code', async () => {
    const [whole, ...shards] = await Promise.all([
      run([...CAMPAIGN, '--out', join(dir, 'whole.jsonl'), '--repro-dir', join(dir, 'whole-repros')]),
      ...[0, 1, 2, 3].map((i) => run([...CAMPAIGN, '--shard', `${i}/4`, '--out', join(dir, `shard-${i}.jsonl`), '--repro-dir', join(dir, 'shard-repros')])),
    ]);
    expect(whole.stderr).toBe('');
    expect(whole.code).toBe(1);
    for (const s of shards) expect(s.stdout).toMatch(/^munmap-vs-access +2 /m);
    const files = [0, 1, 2, 3].map((i) => join(dir, `shard-${i}.jsonl`));
    const merged = await run(['stress', 'merge', ...files, '--seeds', '8', '--out', join(dir, 'merged.jsonl')]);
    expect(merged.stderr).toBe('');
    expect(merged.code).toBe(whole.code);

    // the campaign is a mix: failing and clean seeds (else the comparison proves little)
    const wholeLines = (await readFile(join(dir, 'whole.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SeedResult);
    const failed = wholeLines.filter((l) => !l.ok).length;
    expect(failed).toBeGreaterThan(0);
    expect(failed).toBeLessThan(8);

    // table rows (seeds, failed, failure kinds), failing seeds with messages and repro files, first failure
    const a = stable(tableOf(whole.stdout));
    expect(a.length).toBeGreaterThan(failed * 2);
    expect(stable(tableOf(merged.stdout))).toEqual(a);
    expect(merged.stdout).toMatch(/^8 runs merged from 4 files .*; \d+ FAILED$/m);
    // every repro file named in the merged list exists (where the shards wrote them)
    const repros = [...merged.stdout.matchAll(/^ {4}repro (\S+)$/gm)].map((m) => m[1]);
    expect(repros).toHaveLength(failed);
    for (const r of repros) expect(JSON.parse(await readFile(r, 'utf8')).scenario.name).toBe('munmap-vs-access');

    // the merged lines: the campaign's, seed by seed (timing and repro directory aside)
    const mergedLines = (await readFile(join(dir, 'merged.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SeedResult);
    const strip = ({ wallMs: _w, p50Ns: _a, p99Ns: _b, repro, ...r }: SeedResult) => ({ ...r, repro: repro && basename(repro) });
    expect(mergedLines.map(strip)).toEqual([...wholeLines].sort((x, y) => x.seed - y.seed).map(strip));

    // merging the unsharded campaign's own lines reproduces its table to the digit
    const self = mergeResults({ files: [join(dir, 'whole.jsonl')] });
    const rows = (t: string): string[] => t.split('\n').filter((l) => /^(scenario|munmap-vs-access) /.test(l));
    expect(rows(formatMerge(self))).toEqual(rows(tableOf(whole.stdout)));
    expect(self.exitCode).toBe(1);
  });

  it('bad input: one line naming the file (and line), exit 2; a missing shard is caught with --seeds, warned about without', async () => {
    const f = [0, 1, 2, 3].map((i) => join(dir, `shard-${i}.jsonl`));
    // through the CLI once: one line on stderr, exit 2
    const missing = await run(['stress', 'merge', f[0], f[1], f[3], '--seeds', '8']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('mmsim: munmap-vs-access: 2 of the campaign\'s 8 seeds missing (seed 3, 7): a shard\'s file left out or a shard that did not finish\n');
    expect(missing.stdout).toBe('');
    // the rest in-process: each is a CampaignError (the CLI's exit 2, as above)
    const fails = (o: Parameters<typeof mergeResults>[0]): string => {
      try {
        mergeResults(o);
      } catch (e) {
        expect(e).toBeInstanceOf(CampaignError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(fails({ files: [f[0], f[1], f[0]] })).toMatch(new RegExp(`^${f[0]}:1: munmap-vs-access seed \\d+ is also in ${f[0]}:1 \\(a shard given twice`));
    const warned = mergeResults({ files: [f[0], f[1], f[3]] });
    expect(warned.gaps).toEqual([{ scenario: 'munmap-vs-access', missing: 2, examples: [3, 7] }]);
    expect(formatMerge(warned)).toMatch(/^WARNING: munmap-vs-access: 2 seeds missing between its first and last \(seed 3, 7\)/m);
    expect(fails({ files: f, seeds: 6 })).toMatch(/: munmap-vs-access seed [78] is outside --seed-base 1 --seeds 6$/);

    const junk = join(dir, 'junk.jsonl');
    await writeFile(junk, (await readFile(f[0], 'utf8')) + '{"scenario":"munmap-vs-access","seed":"x"}\n');
    expect(fails({ files: [junk] })).toBe(`${junk}:3: not a seed result ('seed' should be a number, is "x")`);
    await writeFile(junk, 'mmsim stress: munmap-vs-access x seeds 1..8\n');
    expect(fails({ files: [junk] })).toMatch(new RegExp(`^${junk}:1: not JSON \\(.*\\); expected a line of mmsim stress --out$`));

    const other = join(dir, 'other.jsonl');
    await writeFile(other, (await readFile(f[1], 'utf8')).replaceAll('"cpus":2', '"cpus":4'));
    expect(fails({ files: [f[0], other] })).toMatch(/^\S+other.jsonl:1: munmap-vs-access ran with cpus 4, .*, but with cpus 2, .*: not one campaign$/);
    expect(fails({ files: [join(dir, 'nope.jsonl')] })).toBe(`${join(dir, 'nope.jsonl')}: cannot read: ENOENT`);
    expect(fails({ files: [] })).toBe('no JSON-lines file given');
    const empty = join(dir, 'empty.jsonl');
    await writeFile(empty, '\n');
    expect(fails({ files: [empty] })).toBe(`no seed results in ${empty} (empty files)`);
  });
});
