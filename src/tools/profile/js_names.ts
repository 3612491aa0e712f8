// A module hook for profiling: every TypeScript module of mmsim is loaded under
// its own URL with `.js` appended (file:///.../mremap.ts.js), the source and its
// type stripping unchanged. Why: clinic flame and 0x classify a stack frame as
// application code only when its URL ends in `.js` (clinic's frame-node.js,
// getESMAppType: /.+file:\/\/.+\.js/); any other frame counts as "V8 runtime"
// and is hidden by default, which hid the whole simulated kernel (move_ptes,
// flush_tlb_mm_range, walk) behind an "all V8" toggle.
//
// Use: node --import ./src/tools/profile/js_names.ts bin/mmsim.ts run ...
// (npm run profile does it). Only file: URLs ending in .ts are renamed; relative
// imports inside a renamed module still resolve against the same directory.
import { registerHooks } from 'node:module';

const SUFFIX = '.js';

registerHooks({
  resolve(specifier, context, nextResolve) {
    const r = nextResolve(specifier, context);
    return r.url.startsWith('file:') && r.url.endsWith('.ts') ? { ...r, url: r.url + SUFFIX } : r;
  },
  load(url, context, nextLoad) {
    if (url.startsWith('file:') && url.endsWith('.ts' + SUFFIX)) {
      const r = nextLoad(url.slice(0, -SUFFIX.length), { ...context, format: undefined });
      return { ...r, shortCircuit: true };
    }
    return nextLoad(url, context);
  },
});
