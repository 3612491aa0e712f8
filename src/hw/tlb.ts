// A CPU's private TLB: plain typed arrays owned by one thread, tagged by ASID.
// Direct-mapped: a hit is a tag compare and a few plain loads. Each entry records
// the frame generation at fill time, which the UAF oracle compares on every hit.

export const TLB_W = 1; // writable
export const TLB_D = 2; // dirty already set in the PTE: writes need no walk
export const TLB_VALID = 4;
/** filled from a huge (PMD/PUD) leaf: the stale-TLB oracle tells a huge translation from a 4 KiB one */
export const TLB_HUGE = 8;
/** a kernel linear-map entry (src/mm/vmalloc.ts): it translates an address to the one frame the linear map always gives it */
export const TLB_LINEAR = 16;

/** TLB_VALID bound in this module for the methods below: optimized code loads an exported const from its cell, with a hole check, at each use */
const VALID = TLB_VALID;

export class Tlb {
  readonly size: number;
  private readonly mask: number;
  readonly vpn: Float64Array;
  readonly asid: Int32Array;
  readonly pfn: Int32Array;
  readonly flags: Int32Array;
  readonly gen: Int32Array;
  readonly va: Float64Array; // page base, for reports
  /** stale-TLB oracle: H_PROMISE_SEQ when the walk that filled the entry began */
  readonly stamp: Int32Array;
  /** stale-TLB oracle: the mm's MM_PR_MAX when this entry was last judged fine (-1: never) */
  readonly chk: Int32Array;
  constructor(entries: number) {
    if (entries < 1 || entries & (entries - 1)) throw new RangeError('TLB entries must be a power of two');
    this.size = entries;
    this.mask = entries - 1;
    this.vpn = new Float64Array(entries).fill(-1);
    this.asid = new Int32Array(entries).fill(-1);
    this.pfn = new Int32Array(entries);
    this.flags = new Int32Array(entries);
    this.gen = new Int32Array(entries);
    this.va = new Float64Array(entries);
    this.stamp = new Int32Array(entries);
    this.chk = new Int32Array(entries).fill(-1);
  }

  slot(asid: number, vpn: number): number {
    return (vpn ^ (asid * 0x9e37)) & this.mask;
  }

  /** Index of a valid entry for (asid, vpn), or -1. */
  lookup(asid: number, vpn: number): number {
    const s = (vpn ^ (asid * 0x9e37)) & this.mask;
    return this.vpn[s] === vpn && this.asid[s] === asid && this.flags[s] & VALID ? s : -1;
  }

  fill(asid: number, vpn: number, pfn: number, flags: number, gen: number): number {
    const s = (vpn ^ (asid * 0x9e37)) & this.mask;
    this.vpn[s] = vpn;
    this.asid[s] = asid;
    this.pfn[s] = pfn;
    this.flags[s] = flags | VALID;
    this.gen[s] = gen;
    this.chk[s] = -1;
    return s;
  }

  /** fill(), and the entry's stale-TLB stamp (H_PROMISE_SEQ when the walk that fills it began): the page walk's fill */
  fillStamped(asid: number, vpn: number, pfn: number, flags: number, gen: number, stamp: number): number {
    const s = (vpn ^ (asid * 0x9e37)) & this.mask;
    this.vpn[s] = vpn;
    this.asid[s] = asid;
    this.pfn[s] = pfn;
    this.flags[s] = flags | VALID;
    this.gen[s] = gen;
    this.chk[s] = -1;
    this.stamp[s] = stamp;
    return s;
  }

  /** INVLPG: one page of one ASID. */
  flushOne(asid: number, vpn: number): void {
    const s = (vpn ^ (asid * 0x9e37)) & this.mask;
    if (this.vpn[s] === vpn && this.asid[s] === asid) this.flags[s] = 0;
  }

  flushRange(asid: number, startVpn: number, endVpn: number): number {
    const n = endVpn - startVpn;
    if (n >= this.size) {
      for (let s = 0; s < this.size; s++) {
        if (this.asid[s] === asid && this.vpn[s] >= startVpn && this.vpn[s] < endVpn) this.flags[s] = 0;
      }
    } else {
      for (let v = startVpn; v < endVpn; v++) this.flushOne(asid, v);
    }
    return n;
  }

  flushAsid(asid: number): void {
    for (let s = 0; s < this.size; s++) if (this.asid[s] === asid) this.flags[s] = 0;
  }

  flushAll(): void {
    this.flags.fill(0);
  }

  /** Number of valid entries (for tests and reports). */
  countValid(asid = -1): number {
    let n = 0;
    for (let s = 0; s < this.size; s++) if (this.flags[s] & VALID && (asid < 0 || this.asid[s] === asid)) n++;
    return n;
  }
}
