#!/usr/bin/env node
import { fileURLToPath } from 'node:url';
import { main } from './main.js';
import { CHILD_ENV, runFiltered, wantsVerbose } from './quiet.js';

const argv = process.argv.slice(2);
// Commands run in a child whose stderr is filtered of native libraries' noise, unless asked to show it.
const inPlace =
  process.env[CHILD_ENV] === '1' ||
  wantsVerbose(argv, process.env) ||
  argv.length === 0 ||
  argv[0]!.startsWith('-') ||
  argv.includes('--help');
// Let pending GPU/worker handles close on their own; force the code.
process.exitCode = inPlace ? await main(argv) : await runFiltered(fileURLToPath(import.meta.url), argv);
