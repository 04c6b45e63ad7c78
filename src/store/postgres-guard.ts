/**
 * A guard against one known crash of postgres.js 3.4.9, the newest release:
 * a write it scheduled with setImmediate runs after the connection closed and
 * throws `TypeError: Cannot read properties of null (reading 'write')` from
 * `nextWrite` (src/connection.js), outside any promise, so it would end the
 * process: a DP would die when its PostgreSQL primary does
 * (porsager/postgres#1154, #1208; the fixes #1168 and #1209 are not released).
 * The query it belonged to has already been rejected with CONNECTION_CLOSED,
 * or is bounded by the store's own timeout, so the guard logs it and lets the
 * process go on. Any other uncaught exception ends the process as before.
 */

/** Tells whether an uncaught exception is the known one: that TypeError, thrown by postgres.js's `nextWrite`. */
export function isNullSocketWrite(err: unknown): boolean {
  if (!(err instanceof TypeError) || !/\(reading 'write'\)|evaluating 'socket\.write'/.test(err.message)) return false;
  const frame = (err.stack ?? '').split('\n').find((line) => line.trimStart().startsWith('at '));
  return frame !== undefined && /nextWrite \(.*[\\/]postgres[\\/]src[\\/]connection\.js:\d+:\d+\)/.test(frame);
}

let installed = false;

/** Installs the guard once per process; `report` hears of each crash it stopped (no CSI is in it). */
export function guardPostgresNullSocketWrite(report: (message: string) => void): void {
  if (installed) return;
  installed = true;
  process.on('uncaughtException', (err) => {
    if (isNullSocketWrite(err)) {
      report('postgres.js wrote to a connection that had closed (porsager/postgres#1208); its query had failed already: going on');
      return;
    }
    // What Node does without a listener: print the error and exit with 1.
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
