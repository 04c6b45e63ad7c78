/**
 * The PostgreSQL harness (test/fixtures/postgres.ts) on a real primary with a
 * synchronous hot standby, and what postgres.js 3.4.9 does with the two-host URL
 * the PostgreSQL store is given, as facts the store must work with:
 *
 * - `target_session_attrs=read-write` does not tell a hot standby from a primary
 *   on PostgreSQL 14 and later: postgres.js decides from the
 *   `default_transaction_read_only` the server reports at start-up (src/connection.js
 *   `tryNext`), which is `off` on a hot standby. It takes the first host that
 *   answers, so with the primary down it settles on a standby still in recovery
 *   and writes fail with 25006 (read_only_sql_transaction) until the promotion.
 * - `target_session_attrs=primary` decides from `in_hot_standby`: it skips a
 *   standby, and with no primary up it keeps trying the hosts in turn (about a
 *   hundred connections a second, not bounded by connect_timeout) until one is
 *   promoted; the query then runs there.
 * - `read-only` never connects (both nodes report `default_transaction_read_only=off`).
 * - `sql.listen` subscribes again after its connection closes (a terminated backend,
 *   a server restart: every failed attempt closes again and retries, with backoff),
 *   calling `onlisten` each time. But if the new connection lands on a standby in
 *   recovery, its LISTEN fails (25006), the error is swallowed and, the connection
 *   staying open, nothing retries: the listener is lost silently, even after the
 *   promotion. With `target_session_attrs=primary` it waits and resubscribes on the
 *   promoted node.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPostgres, startCluster, type PgCluster, type PgNode, type TargetSessionAttrs } from '../fixtures/postgres.ts';

const available = checkPostgres('the PostgreSQL harness tests');

/** Where a client's query ran. */
interface Where {
  readonly port: number;
  readonly recovery: boolean;
}

/** What a promise did within `ms`: its value, its error's code, or nothing yet. */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<{ readonly value: T } | { readonly code: string } | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(resolve, ms, 'pending');
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (err: unknown) => ({ code: String((err as { code?: unknown }).code ?? err) }),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!available)('PostgreSQL harness, and postgres.js 3.4.9 with a primary and a synchronous standby', () => {
  let cluster: PgCluster;
  let primary: PgNode;
  let standby: PgNode;
  const clients: postgres.Sql[] = [];

  /** A postgres.js client ended in afterAll. */
  function connect(url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
    const sql = postgres(url, { onnotice: () => undefined, ...options });
    clients.push(sql);
    return sql;
  }

  /** The port and recovery state of the server `sql` runs its next query on. */
  async function whereIs(sql: postgres.Sql): Promise<Where> {
    const [row] = await sql<Where[]>`select inet_server_port() as port, pg_is_in_recovery() as recovery`;
    if (row === undefined) throw new Error('no row');
    return row;
  }

  /** The name of the node listening on `port`. */
  function nodeAt(port: number): string {
    return port === primary.port ? 'primary' : port === standby.port ? 'standby' : `port ${port}`;
  }

  beforeAll(async () => {
    cluster = await startCluster({ synchronousStandby: true });
    primary = cluster.primary;
    if (cluster.standby === undefined) throw new Error('no standby');
    standby = cluster.standby;
  });

  afterAll(async () => {
    await Promise.all(clients.map((sql) => sql.end({ timeout: 0 })));
    await cluster?.destroy();
  });

  it('starts a primary and a streaming synchronous standby, and names both in one URL', async () => {
    expect(cluster.url()).toBe(`postgres://mimi@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/mimi?target_session_attrs=read-write`);
    expect(primary.url).toBe(`postgres://mimi@127.0.0.1:${primary.port}/mimi`);
    expect(await primary.query('select application_name, state, sync_state from pg_stat_replication')).toEqual([
      { application_name: 'standby1', state: 'streaming', sync_state: 'sync' },
    ]);
    expect(await primary.query('select pg_is_in_recovery() as recovery, current_setting($$fsync$$) as fsync')).toEqual([{ recovery: false, fsync: 'on' }]);
    expect(await standby.query('select pg_is_in_recovery() as recovery')).toEqual([{ recovery: true }]);
  });

  it('writes through the two-host URL on the primary, and the hot standby reads them', async () => {
    const sql = connect(cluster.url());
    expect(await whereIs(sql)).toEqual({ port: primary.port, recovery: false });
    await sql`create table harness (id integer primary key, note text not null)`;
    await sql`insert into harness (id, note) values (1, 'written on the primary')`;
    // synchronous_commit = on waits for the standby's flush, not its replay: the row shows up there a moment later.
    await expect
      .poll(async () => standby.query('select id, note from harness').catch(() => []), { timeout: 5_000, interval: 25 })
      .toEqual([{ id: 1, note: 'written on the primary' }]);
  });

  it('parses the host:port list of a URL into one host and one port each', () => {
    const sql = connect(cluster.url(), { max: 1 });
    expect(sql.options.host).toEqual(['127.0.0.1', '127.0.0.1']);
    expect(sql.options.port).toEqual([primary.port, standby.port]);
    expect(sql.options.target_session_attrs).toBe('read-write');
    // libpq's 'any' is not a value postgres.js knows.
    expect(() => postgres(`${primary.url}?target_session_attrs=any`)).toThrow('target_session_attrs any is not supported');
  });

  // Which node a fresh client settles on with both nodes up, by URL order; 'never' = still connecting after 500 ms.
  const picks: readonly { readonly tsa: TargetSessionAttrs; readonly standbyFirst: string; readonly primaryFirst: string }[] = [
    // The pitfall: a hot standby reports default_transaction_read_only=off, so read-write takes it.
    { tsa: 'read-write', standbyFirst: 'standby', primaryFirst: 'primary' },
    { tsa: 'primary', standbyFirst: 'primary', primaryFirst: 'primary' },
    { tsa: 'standby', standbyFirst: 'standby', primaryFirst: 'standby' },
    { tsa: 'prefer-standby', standbyFirst: 'standby', primaryFirst: 'standby' },
    // Every node reports default_transaction_read_only=off: read-only matches none and tries them in turn for ever.
    { tsa: 'read-only', standbyFirst: 'never', primaryFirst: 'never' },
  ];
  it.each(picks)('target_session_attrs=$tsa: standby first -> $standbyFirst, primary first -> $primaryFirst', async ({ tsa, standbyFirst, primaryFirst }) => {
    const pick = async (first: PgNode, second: PgNode): Promise<string> => {
      const sql = connect(`postgres://mimi@127.0.0.1:${first.port},127.0.0.1:${second.port}/mimi?target_session_attrs=${tsa}`, { max: 1 });
      const outcome = await settleWithin(whereIs(sql), 500);
      await sql.end({ timeout: 0 });
      return outcome === 'pending' ? 'never' : 'value' in outcome ? nodeAt(outcome.value.port) : `error ${outcome.code}`;
    };
    expect(await pick(standby, primary)).toBe(standbyFirst);
    expect(await pick(primary, standby)).toBe(primaryFirst);
  });

  it('sql.listen subscribes again, calling onlisten, after its backend is terminated and after the server restarts', async () => {
    const listener = connect(primary.url, { connection: { application_name: 'restart-listener' } });
    const heard: string[] = [];
    let subscriptions = 0;
    await listener.listen(
      'restarts',
      (payload) => heard.push(payload),
      () => {
        subscriptions += 1;
      },
    );
    const notify = (payload: string) => primary.query(`select pg_notify('restarts', '${payload}')`);
    await notify('first');
    await expect.poll(() => heard, { timeout: 5_000, interval: 25 }).toEqual(['first']);
    expect(subscriptions).toBe(1);

    await primary.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'restart-listener'`);
    await expect.poll(() => subscriptions, { timeout: 5_000, interval: 25 }).toBe(2);
    await notify('after terminate');
    await expect.poll(() => heard, { timeout: 5_000, interval: 25 }).toEqual(['first', 'after terminate']);

    await primary.stop({ mode: 'fast' });
    await primary.start();
    // While the server is down each attempt fails, closes, and retries after a backoff (10 ms, 30 ms, 90 ms ...).
    await expect.poll(() => subscriptions, { timeout: 10_000, interval: 25 }).toBe(3);
    await notify('after restart');
    await expect.poll(() => heard, { timeout: 5_000, interval: 25 }).toEqual(['first', 'after terminate', 'after restart']);
    await cluster.waitForStandby();
  });

  it('after SIGKILL of the primary: no acknowledged commit is lost, read-write lands on the standby in recovery, primary waits for the promotion', async () => {
    const writer = connect(cluster.url());
    const rwHeard: string[] = [];
    const primaryHeard: string[] = [];
    let rwSubscriptions = 0;
    let primarySubscriptions = 0;
    await connect(cluster.url('read-write'), { connection: { application_name: 'rw-listener' } }).listen(
      'failover',
      (payload) => rwHeard.push(payload),
      () => {
        rwSubscriptions += 1;
      },
    );
    await connect(cluster.url('primary'), { connection: { application_name: 'primary-listener' } }).listen(
      'failover',
      (payload) => primaryHeard.push(payload),
      () => {
        primarySubscriptions += 1;
      },
    );
    await writer`create table acknowledged (id integer primary key)`;
    for (let id = 1; id <= 20; id += 1) await writer`insert into acknowledged (id) values (${id})`;

    await primary.kill();
    expect(primary.isRunning()).toBe(false);

    // A client connecting now, and the writer once its connection has failed (its first query may fail with
    // CONNECTION_CLOSED), both settle on the standby although it is read-only: writes fail until the promotion.
    const fresh = connect(cluster.url(), { max: 1 });
    expect(await whereIs(fresh)).toEqual({ port: standby.port, recovery: true });
    await expect(fresh`insert into acknowledged (id) values (100)`).rejects.toMatchObject({ code: '25006' });
    await expect.poll(async () => whereIs(writer).catch(() => undefined), { timeout: 5_000, interval: 25 }).toEqual({ port: standby.port, recovery: true });
    await expect(writer`insert into acknowledged (id) values (101)`).rejects.toMatchObject({ code: '25006' });

    // The read-write listener's new connection is on the standby too, where its LISTEN failed.
    await expect
      .poll(async () => standby.query(`select query from pg_stat_activity where application_name = 'rw-listener'`), { timeout: 5_000, interval: 25 })
      .toEqual([{ query: 'listen "failover"' }]);

    // target_session_attrs=primary skips the standby and keeps trying, past its connect_timeout.
    const waiting = connect(cluster.url('primary'), { max: 1, connect_timeout: 1 });
    const waited = whereIs(waiting);
    expect(await settleWithin(waited, 1_500)).toBe('pending');

    await standby.promote();
    expect(await waited).toEqual({ port: standby.port, recovery: false });
    // The sessions opened on the standby write once it is promoted.
    await fresh`insert into acknowledged (id) values (100)`;
    await writer`insert into acknowledged (id) values (101)`;
    // Synchronous commit: every insert acknowledged by the old primary is on the new one.
    expect(await standby.query('select count(*)::integer as n from acknowledged where id <= 20')).toEqual([{ n: 20 }]);

    // The primary listener subscribed again on the promoted node; the read-write one did not, and never will.
    await expect.poll(() => primarySubscriptions, { timeout: 10_000, interval: 25 }).toBe(2);
    await standby.query(`select pg_notify('failover', 'on the new primary')`);
    await expect.poll(() => primaryHeard, { timeout: 5_000, interval: 25 }).toEqual(['on the new primary']);
    expect(rwHeard).toEqual([]);
    expect(rwSubscriptions).toBe(1);
  });

  it('restarts a killed node as it was: the old primary comes back a second primary, and read-write takes it (it is named first)', async () => {
    await primary.start();
    expect(await primary.query('select pg_is_in_recovery() as recovery')).toEqual([{ recovery: false }]);
    expect(await whereIs(connect(cluster.url(), { max: 1 }))).toEqual({ port: primary.port, recovery: false });
  });
});
