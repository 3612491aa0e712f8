#!/usr/bin/env node
// The `mmsim` command's entry (package.json "bin"). Plain JavaScript on purpose:
// `npx --prefix <checkout> mmsim`, `npm link` and global installs start it
// through the `#!/usr/bin/env node` line above, that is with whatever Node comes
// first on PATH, often the system's (20 here), which cannot load TypeScript.
// mmsim itself (bin/mmsim.ts) needs Node >= 24 (type stripping, the pinned
// devDependency `node`). So:
//   - Node >= 24: load bin/mmsim.ts in this process;
//   - older: re-execute bin/mmsim.ts with the pinned Node of this checkout
//     (node_modules/node/bin/node, installed by `npm ci`), same arguments,
//     same stdio, its exit code or signal passed through;
//   - no pinned Node: one line naming the Node it needs and a command that works, exit 2.
// Nothing here may use syntax or APIs newer than Node 12 (no top-level await).

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const NEEDS = 24;
const here = dirname(fileURLToPath(import.meta.url));
const entry = join(here, 'mmsim.ts');
const major = Number(process.versions.node.split('.')[0]);

function executable(p) {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The pinned Node: this checkout's node_modules first, then wherever `node` resolves from here (a hoisted install). */
function pinnedNode() {
  const exe = process.platform === 'win32' ? 'node.exe' : 'node';
  const candidates = [join(here, '..', 'node_modules', 'node', 'bin', exe)];
  try {
    candidates.push(join(dirname(createRequire(import.meta.url).resolve('node/package.json')), 'bin', exe));
  } catch {
    // not installed
  }
  return candidates.find(executable);
}

function refuse(why) {
  process.stderr.write(`mmsim: needs Node >= ${NEEDS}, this is Node ${process.version} (${process.execPath})${why}; `
    + `run 'npm ci' in ${join(here, '..')} (it installs the pinned Node ${NEEDS}), or start mmsim with a Node ${NEEDS}: <node-${NEEDS}> ${entry} ${process.argv.slice(2).join(' ')}`.trimEnd() + '\n');
  process.exit(2);
}

if (/[\\/]node_modules[\\/]/.test(entry)) {
  // a copy installed into node_modules (npm install -g <tarball>): Node strips types only outside node_modules
  process.stderr.write(`mmsim: runs from a checkout, not from a copy under node_modules (${entry}: Node does not strip TypeScript types there); `
    + `clone it, run 'npm ci' and 'npm link' in the checkout\n`);
  process.exit(2);
} else if (major >= NEEDS) {
  import(pathToFileURL(entry).href);
} else if (process.env.MMSIM_LAUNCHED_BY) {
  // the "pinned" Node we started is itself too old: do not loop
  refuse(`, started as the pinned Node by ${process.env.MMSIM_LAUNCHED_BY}`);
} else {
  const node = pinnedNode();
  if (!node) refuse(` and the pinned Node is not installed (no ${join(here, '..', 'node_modules', 'node', 'bin', 'node')})`);
  const child = spawn(node, [...process.execArgv, entry, ...process.argv.slice(2)], {
    stdio: 'inherit', env: { ...process.env, MMSIM_LAUNCHED_BY: process.execPath },
  });
  // Ctrl-C reaches the whole foreground process group, the child included: ignore it here
  // (mmsim stress prints its table on the first SIGINT and must not get a second one).
  // Signals sent to this process alone (kill, a batch engine stopping a pod) are passed on.
  process.on('SIGINT', () => {});
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGQUIT']) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => refuse(`; starting the pinned Node ${node} failed: ${e.message}`));
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else {
      process.exit(code ?? 1);
    }
  });
}
