import { defineScenario } from '../src/engine/scenario.ts';

// Dirty COW, CVE-2016-5195 (fixed by commit 19be0eaffa3a): an attacker maps a file it may only
// read (MAP_PRIVATE, PROT_READ) and writes to it through /proc/self/mem (GUP
// with FOLL_FORCE | FOLL_WRITE: the write breaks COW into a private anonymous
// copy), while a sibling thread zaps that copy with MADV_DONTNEED in a loop. A
// victim process maps the same file and reads it. The fixed GUP only accepts a
// read-only entry for a forced write when it is our dirty anon-exclusive copy,
// so the page cache is never written; with knob gup.dirty_cow (GUP drops write
// intent after the COW) the retry can map the page-cache page and write it, and
// the victim reads the attacker's private write (the COW oracle).
export default defineScenario({
  name: 'dirty-cow',
  description: 'CVE-2016-5195: /proc/self/mem writes to a read-only private file mapping vs MADV_DONTNEED; a victim reads the file',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 32 },
  run: { opsPerCpu: 3000, seed: 1, delay: 0.2 },
  files: [{ name: 'passwd', pages: 2 }],
  processes: [
    {
      name: 'attacker',
      regions: [{ name: 'map', pages: 2, file: 'passwd', prot: 'r' }],
      threads: [
        { name: 'procmem', cpus: 0, program: [{ op: 'procmem-write', region: 'map' }] },
        { name: 'madviser', cpus: 2, program: [{ op: 'madvise', region: 'map', pages: 1 }] },
      ],
    },
    {
      name: 'victim',
      regions: [{ name: 'map', pages: 2, file: 'passwd', prot: 'r' }],
      threads: [{ name: 'reader', cpus: 'rest', program: [{ op: 'access', region: 'map', mode: 'read', count: 4 }] }],
    },
  ],
});
