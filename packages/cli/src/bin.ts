#!/usr/bin/env node
import { main } from './main.js';

const code = await main(process.argv.slice(2));
// Let pending GPU/worker handles close on their own; force the code.
process.exitCode = code;
