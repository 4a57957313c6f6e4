#!/usr/bin/env node
// The crisp command: `crisp daemon` runs crispd; the rest are crictl-like clients over CRI.
import { runCli } from './program.js';

await runCli(process.argv.slice(2));
