// Issue #14 item 5: a catalogue entry's report shows its race on the first screen, checked by
// rendering the report `mmsim bugs run` writes in headless Chromium. Every entry:
// test/race_screens.hunt.ts (npm run test:catalogue); here one, to keep npm test short.
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findChromium, raceOnScreen } from './helpers.ts';

const chromium = findChromium();
if (!chromium) console.warn('race_screen.test.ts: no headless Chromium found ($CHROMIUM, chromium, chromium-browser, google-chrome): the rendering check is SKIPPED');

describe('the race on one screen', () => {
  it.skipIf(!chromium)('munmap.free_before_flush: the report written by `mmsim bugs run` has its race (fill, free, flush, stale use) above the fold at 1400x900', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmsim-race-'));
    const r = raceOnScreen(chromium!, 'knob:munmap.free_before_flush', dir);
    expect(r.exit, r.output).toBe(1);
    expect(r.report, r.output).not.toBeNull();
    expect(r.screen).toBeGreaterThan(600);
    expect(r.section, 'the report has a race section').toBe('race');
    expect(r.raceCpus, `${r.report}: the race shows one CPU only`).toBeGreaterThanOrEqual(2);
    expect(r.roles).toEqual(expect.arrayContaining(['fill', 'free', 'use']));
    expect(r.raceBottom!).toBeLessThanOrEqual(r.screen);
  }, 120_000);
});
