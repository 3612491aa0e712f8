#!/usr/bin/env node
import { main } from '../src/cli/main.ts';

main(process.argv.slice(2)).then((code) => process.exit(code));
