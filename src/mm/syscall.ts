// The entry and exit of a simulated system call: counted, and logged as a span
// in the CPU's event ring (SYSCALL ... SYSCALL_END) for reports and traces.
import { current } from '../hw/cpu.ts';
import { ST_SYSCALLS } from '../hw/layout.ts';
import { EV } from '../hw/trace.ts';

export function syscall(id: number, arg: number, body: () => number): number {
  const cpu = current;
  cpu.stat(ST_SYSCALLS);
  cpu.ring.log(EV.SYSCALL, id, arg);
  const r = body();
  cpu.ring.log(EV.SYSCALL_END, id, r);
  return r;
}
