#!/usr/bin/env node
// The `mimi` executable. Installed from the package it runs the compiled CLI
// (dist/cli.js: plain Node, no TypeScript at run time; the package holds no
// sources). In a clone of the repository, where the TypeScript sources sit
// beside this file, it runs them through tsx (a devDependency): `npx mimi` runs
// what is checked out, with or without a build, and never a stale dist/.
import { existsSync } from 'node:fs';

const sources = new URL('./cli.ts', import.meta.url);
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(sources.href);
} else {
  await import('../dist/cli.js');
}
