/**
 * The guard against postgres.js 3.4.9's write to a closed connection
 * (porsager/postgres#1208) recognises that crash only: anything else still
 * ends the process.
 */
import { describe, expect, it } from 'vitest';
import { isNullSocketWrite } from '../../../src/store/postgres-guard.ts';

function typeError(message: string, stack: string): TypeError {
  const err = new TypeError(message);
  err.stack = `TypeError: ${message}\n${stack}`;
  return err;
}

describe('the null-socket guard', () => {
  it.each([
    [
      'the known crash',
      typeError(
        "Cannot read properties of null (reading 'write')",
        '    at Immediate.nextWrite (file:///srv/mimi/node_modules/postgres/src/connection.js:255:22)\n    at process.processImmediate (node:internal/timers:483:21)',
      ),
      true,
    ],
    [
      'the same message from elsewhere',
      typeError("Cannot read properties of null (reading 'write')", '    at write (file:///srv/mimi/src/server/bind.ts:10:3)'),
      false,
    ],
    [
      'another error from postgres.js',
      typeError(
        "Cannot read properties of undefined (reading 'replace')",
        '    at queryError (file:///srv/mimi/node_modules/postgres/src/connection.js:389:48)',
      ),
      false,
    ],
    ['not a TypeError', new Error("Cannot read properties of null (reading 'write')"), false],
  ])('%s: %s', (_name, err, known) => {
    expect(isNullSocketWrite(err)).toBe(known);
  });
});
