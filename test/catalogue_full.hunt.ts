// npm run test:catalogue (not part of npm test): every caught catalogue entry,
// hunted with the default strategy exactly as `mmsim bugs run ID` does, is
// caught within its stated seed budget, and the same seeds without the knob are
// clean. Free-mode seeds depend on the machine's timing: the budgets leave a
// margin (docs/hunting.md has the measured seeds to the first catch).
import { describe, it, expect } from 'vitest';
import { caughtEntries } from '../src/tools/bugs/catalogue.ts';
import { huntEntry } from '../src/tools/bugs/run.ts';

describe('the catalogue, every caught entry within its budget', () => {
  for (const e of caughtEntries()) {
    it(`${e.id}: ${e.knob} in ${e.scenario}${e.run?.arch ? ` (${e.run.arch})` : ''} caught within ${e.budget} seeds, clean without it`, async () => {
      const hit = await huntEntry(e, { seeds: e.budget });
      expect(hit.first, `not caught in ${hit.seedsRun} seeds`).toBeDefined();
      const clean = await huntEntry(e, { seeds: e.budget, fixed: true });
      expect(clean.failures.map((f) => `seed ${f.seed}: [${f.kind}] ${f.message}`)).toEqual([]);
      expect(clean.seedsRun).toBe(e.budget);
    }, 3_600_000);
  }
});
