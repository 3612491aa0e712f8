// npm run test:catalogue: every caught catalogue entry's report, as `mmsim bugs run ID` writes it,
// rendered by headless Chromium at 1400x900 (issue #14 item 5). A stale use (the UAF, stale-TLB,
// COW and content oracles) must show its race, the stale use and the change it outlived, ending on
// the first screen; a finding that is not a stale use (lockdep's two chains, an s390 rule broken by
// one store, a lazy MMU contract, a page freed while mapped) must show the oracle's report there
// instead (src/report/race.ts FINDING_KINDS). Entries caught by the
// end-of-run audit or as a hang have nothing to replay and write no report: listed, not checked.
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caughtEntries } from '../src/tools/bugs/catalogue.ts';
import { findChromium, raceOnScreen } from './helpers.ts';
import { FINDING_KINDS } from '../src/report/race.ts';

const chromium = findChromium();
if (!chromium) console.warn('race_screens.hunt.ts: no headless Chromium found: the rendering checks are SKIPPED');
/** caught by the end-of-run audit (a leaked reference) or as a hang (a leaked mmap_lock): no report */
const NO_REPORT = new Set(['knob:fault.leak_ref', 'knob:munmap.leak_mmap_lock']);

describe('every catalogue entry: the race on one screen', () => {
  for (const e of caughtEntries()) {
    it.skipIf(!chromium || NO_REPORT.has(e.id))(`${e.id} (${e.scenario})`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'mmsim-race-'));
      const r = raceOnScreen(chromium!, e.id, dir);
      expect(r.exit, r.output).toBe(1);
      expect(r.report, r.output).not.toBeNull();
      const kind = /^ {2}\[([\w-]+)\]/m.exec(r.output)?.[1] ?? '';
      expect(r.section, `${r.report} (${kind})`).toBe(FINDING_KINDS.test(kind) ? 'finding' : 'race');
      if (r.section === 'race') {
        // the stale use and the change it outlived (on another CPU, or the using CPU's own: its fork, its mprotect)
        expect(r.roles, r.report!).toContain('use');
        expect(r.roles.filter((x) => ['syscall', 'change', 'zap', 'free'].includes(x)), `${r.report}: the race has no change side`).not.toEqual([]);
      }
      expect(r.raceBottom!, `${r.report}: the ${r.section} ends at ${r.raceBottom} px, below the first screen (${r.screen} px)`).toBeLessThanOrEqual(r.screen);
    }, 900_000);
  }
});
