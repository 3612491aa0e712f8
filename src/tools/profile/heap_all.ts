// Preload for `npm run profile -- heapprofiler` (node --import). Two things kept
// clinic heapprofiler's report of an mmsim run empty (0 samples), measured here:
//  1. its preload starts V8's sampling heap profiler only after an fs callback,
//     which for an inline run came after the whole run had finished (start and
//     stop 14 ms apart, after the summary was printed);
//  2. the sampling heap profile holds only the sampled objects still alive when it
//     is taken, at exit, and a finished run has let go of everything (on Node 24
//     even a plain script that allocates gave 0 samples).
// So this starts the sampling itself at start-up, keeping the samples of objects
// the garbage collector freed (HeapProfiler.startSampling's
// includeObjectsCollectedByMajorGC/MinorGC), and answers clinic's own
// startSampling / stopSampling from that profile: clinic gets a profile of the
// whole run, allocations by function, in the format it expects.
import inspector from 'node:inspector';

type Callback = (err: Error | null, result?: unknown) => void;
type Post = (this: inspector.Session, method: string, params?: object | Callback, cb?: Callback) => void;

const SAMPLING_INTERVAL = 32768; // bytes, clinic's default
const mine = new inspector.Session();
mine.connect();
let started = false;
const proto = inspector.Session.prototype as unknown as { post: Post };
const post = proto.post;
post.call(mine, 'HeapProfiler.startSampling', {
  samplingInterval: SAMPLING_INTERVAL, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
}, (err) => {
  started = !err;
});

proto.post = function (method, params, cb) {
  if (this !== mine && started) {
    const done = typeof params === 'function' ? params : cb;
    if (method === 'HeapProfiler.startSampling') {
      process.nextTick(() => done?.(null, {}));
      return;
    }
    if (method === 'HeapProfiler.stopSampling') {
      started = false;
      post.call(mine, method, (err, result) => {
        mine.disconnect();
        done?.(err, result);
      });
      return;
    }
  }
  post.call(this, method, params, cb);
};
