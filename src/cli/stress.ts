// `mmsim stress`: many seeds in parallel.
import type { Command } from 'commander';

export function registerStress(program: Command): void {
  void program;
}
