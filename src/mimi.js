#!/usr/bin/env node
// The `mimi` executable: registers tsx so Node 20 can load the TypeScript sources, then runs the CLI.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
