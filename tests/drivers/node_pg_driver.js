// node-postgres (pg) scenarios run through Shardyard by drivers_test (node_pg_test.cc): one per argv[2].
'use strict'

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const pg = require('pg')

const MODE = process.env.SY_MODE || 'transaction'
const POOL_SIZE = Number(process.env.SY_POOL_SIZE || '0')
// SY_DIRECT=1: talking to PostgreSQL itself (a reference run); checks about pooling are skipped.
const POOLED = process.env.SY_DIRECT !== '1'

// A hang fails with a message instead of waiting for ctest's timeout.
setTimeout(() => {
  console.log('TIMEOUT: scenario still running after 90s')
  process.exit(3)
}, 90000).unref()

const log = (...args) => console.log(...args)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const md5 = (text) => crypto.createHash('md5').update(text).digest('hex')

// A client whose ParameterStatus messages are recorded in client.reported.
async function connect(config = {}) {
  const client = new pg.Client(config) // host, port, user, password, database: PG* variables
  client.reported = {}
  client.connection.on('parameterStatus', (m) => {
    client.reported[m.parameterName] = m.parameterValue
  })
  await client.connect()
  return client
}

async function value(client, text, values) {
  const r = await client.query(text, values)
  return Object.values(r.rows[0])[0]
}

async function backendPid(client) {
  return value(client, 'SELECT pg_backend_pid() AS pid')
}

function checkServers(pids, what) {
  log(`${what}: ${pids.size} server backends`)
  if (POOLED) assert.ok(pids.size <= POOL_SIZE, `${what}: ${pids.size} servers for pool size ${POOL_SIZE}`)
}

// pg rejects a failed query on its ErrorResponse, which may come before the ReadyForQuery
// that carries the transaction status: wait for that one.
async function readyForQuery(client) {
  for (let i = 0; i < 500 && !client.readyForQuery; i++) await sleep(10)
  assert.ok(client.readyForQuery, 'ReadyForQuery after the error')
}

// Runs fn, which must reject with a PostgreSQL error of `code`; returns the error.
async function rejects(fn, code, what) {
  try {
    await fn()
  } catch (e) {
    assert.equal(e.code, code, `${what}: ${e.message}`)
    return e
  }
  assert.fail(`${what}: expected an error ${code}, nothing was raised`)
}

// ---------------------------------------------------------------------------------------------

async function scenarioTypes() {
  const c = await connect()
  try {
    assert.equal(c.reported.client_encoding, 'UTF8')
    assert.equal(c.reported.integer_datetimes, 'on')
    assert.ok(Number(c.reported.server_version.split('.')[0]) >= 15, c.reported.server_version)
    assert.ok(c.processID !== null && c.secretKey !== null, 'BackendKeyData received')

    // Simple protocol (no values), including several statements in one query.
    let r = await c.query("SELECT 1 AS one, 'x' AS x, NULL::text AS n")
    assert.deepEqual(r.rows, [{ one: 1, x: 'x', n: null }])
    const multi = await c.query('SELECT count(*)::int AS n FROM items; SELECT v FROM items WHERE id = 3')
    assert.equal(multi.length, 2)
    assert.deepEqual(multi[0].rows, [{ n: 10 }])
    assert.deepEqual(multi[1].rows, [{ v: 'item 3' }])

    await c.query(
      'CREATE TABLE types_t (id int PRIMARY KEY, n numeric, ts timestamptz, b bytea, j jsonb,' +
        ' js json, u text, a int[], uu uuid, f float8, bo bool, big bigint)'
    )
    const bytes = Buffer.from([...Array(256).keys()])
    const unicode = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \u{1f600} 'quote' \"dq\" \\ back"
    const doc = { k: ['\u00fc', 1, null, true], n: 1.5, emoji: '\u{1f600}' }
    const ts = new Date('2024-02-29T23:59:59.123Z')
    const row = [
      '12345678901234567890.123456789012345678901234567890',
      ts,
      bytes,
      doc,
      JSON.stringify(doc),
      unicode,
      [1, null, 3],
      '12345678-1234-5678-1234-567812345678',
      0.1,
      true,
      '-9223372036854775808',
    ]
    const insert = 'INSERT INTO types_t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)'
    await c.query(insert, [1, ...row])
    await c.query(insert, [2, ...row.map(() => null)])
    r = await c.query('SELECT n, ts, b, j, js, u, a, uu, f, bo, big FROM types_t ORDER BY id')
    assert.deepEqual(r.rows[0], {
      n: row[0], ts, b: bytes, j: doc, js: doc, u: unicode, a: [1, null, 3],
      uu: row[7], f: 0.1, bo: true, big: row[10],
    })
    assert.ok(Object.values(r.rows[1]).every((v) => v === null), 'NULL row')
    r = await c.query(
      'SELECT octet_length(b) AS len, md5(b) AS md5, length(u) AS chars, n::text AS n FROM types_t WHERE id = 1'
    )
    assert.deepEqual(r.rows[0], { len: 256, md5: md5(bytes), chars: [...unicode].length, n: row[0] })

    // Binary results, and a binary parameter (a Buffer is always sent in binary). pg decodes
    // binary fields as UTF-8 text first, so only types whose bytes survive that are checked.
    const four = Buffer.alloc(4)
    four.writeInt32BE(41)
    r = await c.query({
      text: 'SELECT $1::int4 + 1 AS i, u, bo, a IS NULL AS a FROM types_t WHERE id = 1',
      values: [four],
      binary: true,
    })
    assert.deepEqual(r.fields.map((f) => f.format), ['binary', 'binary', 'binary', 'binary'])
    assert.deepEqual(r.rows[0], { i: 42, u: unicode, bo: true, a: false })

    // An empty query, and 8 MB values both ways.
    r = await c.query('')
    assert.equal(r.command, null)
    const big = Buffer.alloc(8 << 20, 'abcdefgh')
    r = await c.query("SELECT md5($1::bytea) AS m, $1::bytea AS b, repeat('\u00e9', 4000000) AS t", [big])
    assert.equal(r.rows[0].m, md5(big))
    assert.ok(r.rows[0].b.equals(big), '8 MB result')
    assert.equal(r.rows[0].t, '\u00e9'.repeat(4000000))

    // Row-limited Execute with Flush (what cursors do): the portal is resumed until done.
    const got = []
    await new Promise((resolve, reject) => {
      const q = new pg.Query({ text: 'SELECT g FROM generate_series(1, 25) g WHERE g > $1', values: [0], rows: 4 })
      q.on('row', (rowObj) => got.push(rowObj.g))
      q.on('end', resolve)
      q.on('error', reject)
      c.query(q)
    })
    assert.deepEqual(got, [...Array(25).keys()].map((i) => i + 1))
  } finally {
    await c.end()
  }
}

async function waitForAServer(a, b, c) {
  // Pool size 2, both servers in open transactions: c waits, then sees a's commit only.
  await a.query('BEGIN')
  await a.query("INSERT INTO ledger VALUES (500, 'held', 1)")
  await b.query('BEGIN')
  await b.query("INSERT INTO ledger VALUES (501, 'held', 1)")
  let doneAt = null
  const third = c.query("SELECT count(*)::int AS n FROM ledger WHERE who = 'held'").then((r) => {
    doneAt = process.hrtime.bigint()
    return r.rows[0].n
  })
  await sleep(500)
  assert.equal(doneAt, null, 'the third client waited for a server')
  const committedAt = process.hrtime.bigint()
  await a.query('COMMIT')
  assert.equal(await third, 1, 'the third client sees the committed row only')
  assert.ok(doneAt >= committedAt, 'the third client ran after the commit')
  await b.query('ROLLBACK')
}

async function scenarioTransactions() {
  const admin = await connect()
  const count = async (where = 'true') => value(admin, `SELECT count(*)::int FROM ledger WHERE ${where}`)
  await admin.query('CREATE TABLE ledger (id int PRIMARY KEY, who text, amount int)')
  const c = await connect()
  await c.query('BEGIN')
  await c.query("INSERT INTO ledger VALUES (1, 'a', 10)")
  assert.equal(await count(), 0, 'uncommitted row invisible to another client')
  await c.query('COMMIT')
  assert.equal(await count(), 1, 'committed row visible')
  await c.query('BEGIN')
  await c.query('INSERT INTO ledger VALUES ($1, $2, $3)', [2, 'a', 20])
  await c.query('ROLLBACK')
  assert.equal(await count(), 1, 'rolled back row gone')

  // An error inside a transaction aborts it until ROLLBACK.
  await c.query('BEGIN')
  await c.query("INSERT INTO ledger VALUES (3, 'a', 30)")
  await rejects(() => c.query('INSERT INTO ledger VALUES ($1, $2, $3)', [1, 'dup', 0]), '23505', 'duplicate')
  await readyForQuery(c)
  assert.equal(c.getTransactionStatus(), 'E', 'transaction status after the error')
  await rejects(() => c.query('SELECT 1'), '25P02', 'statement in an aborted transaction')
  await c.query('ROLLBACK')
  assert.equal(c.getTransactionStatus(), 'I')
  assert.equal(await count('id = 3'), 0, "the failed transaction's insert was rolled back")

  // Savepoints.
  await c.query('BEGIN')
  await c.query("INSERT INTO ledger VALUES (10, 'sp', 1)")
  await c.query('SAVEPOINT s1')
  await rejects(() => c.query("INSERT INTO ledger VALUES (10, 'sp', 2)"), '23505', 'after a savepoint')
  await c.query('ROLLBACK TO SAVEPOINT s1')
  await c.query("INSERT INTO ledger VALUES (11, 'sp', 3)")
  await c.query('SAVEPOINT s2')
  await c.query("INSERT INTO ledger VALUES (12, 'sp', 4)")
  await c.query('RELEASE SAVEPOINT s2')
  await c.query('COMMIT')
  assert.equal(await count("who = 'sp'"), 3, 'rows around savepoints')

  // A transaction keeps its server; clients share the pool's servers.
  const b = await connect()
  const d = await connect()
  await c.query('BEGIN')
  const inTx = new Set()
  for (let i = 0; i < 5; i++) inTx.add(await backendPid(c))
  await c.query('COMMIT')
  assert.equal(inTx.size, 1, 'one server for a whole transaction')
  const seen = new Set()
  for (let i = 0; i < 10; i++) for (const x of [b, c, d]) seen.add(await backendPid(x))
  checkServers(seen, 'three clients')
  if (POOLED && POOL_SIZE === 2) await waitForAServer(b, c, d)
  await Promise.all([b.end(), c.end(), d.end()])

  // Many clients, each running transactions concurrently, some rolled back, some failing.
  const pids = new Set()
  const workers = [...Array(8).keys()].map(async (w) => {
    const x = await connect()
    try {
      for (let i = 0; i < 25; i++) {
        await x.query('BEGIN')
        await x.query('INSERT INTO ledger VALUES ($1, $2, $3)', [10000 + w * 100 + i, `w${w}`, i])
        pids.add(await backendPid(x))
        if (i % 5 === 4) {
          await x.query('ROLLBACK')
        } else if (i % 7 === 6) {
          await rejects(() => x.query('SELECT 1/0'), '22012', 'division by zero in a transaction')
          await x.query('ROLLBACK')
        } else {
          await x.query('COMMIT')
        }
      }
    } finally {
      await x.end()
    }
  })
  await Promise.all(workers)
  // Per worker: 25 transactions, 5 rolled back (i % 5 == 4) and 3 failed (i = 6, 13, 20).
  assert.equal(await count("who LIKE 'w%'"), 8 * 17, 'rows committed by the workers')
  checkServers(pids, 'eight concurrent clients')
  await admin.end()
}

async function scenarioPool() {
  // pg.Pool with more clients than Shardyard has servers, many concurrent queries.
  const pool = new pg.Pool({ max: 20 })
  await pool.query('CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)')
  await pool.query('INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g')
  const pids = new Set()
  let running = 0
  let peak = 0
  const jobs = [...Array(300).keys()].map(async (i) => {
    running++
    peak = Math.max(peak, running)
    try {
      if (i % 3 === 0) {
        // A transaction on one pooled client.
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query('UPDATE counters SET n = n + 1 WHERE id = $1', [(i % 10) + 1])
          const pid = await backendPid(client)
          assert.equal(await backendPid(client), pid, 'same server within a transaction')
          pids.add(pid)
          await client.query(i % 2 === 0 ? 'COMMIT' : 'ROLLBACK')
        } finally {
          client.release()
        }
      } else {
        const r = await pool.query('SELECT $1::int * 2 AS v, pg_backend_pid() AS pid', [i])
        assert.equal(r.rows[0].v, i * 2)
        pids.add(r.rows[0].pid)
      }
    } finally {
      running--
    }
  })
  await Promise.all(jobs)
  // i % 3 == 0 and even: i % 6 == 0, for i in 0..299: 50 commits.
  assert.equal(await value(pool, 'SELECT sum(n)::int FROM counters'), 50, 'committed increments')
  assert.ok(peak > POOL_SIZE, `queries overlapped (peak ${peak})`)
  checkServers(pids, `pg.Pool (max 20) with ${pool.totalCount} clients`)
  await pool.end()
}

async function scenarioPipeline() {
  // pg's pipeline mode: every query is sent at once, each with its own Sync.
  const c = new pg.Client({ pipeline: true })
  await c.connect()
  try {
    await c.query('CREATE TABLE pipe (id int PRIMARY KEY)')
    const results = await Promise.allSettled([...Array(50).keys()].map((i) =>
      c.query('INSERT INTO pipe VALUES ($1) RETURNING id', [i === 25 ? 0 : i])
    ))
    results.forEach((r, i) => {
      if (i === 25) {
        assert.equal(r.status, 'rejected')
        assert.equal(r.reason.code, '23505', 'the duplicate in the middle fails')
      } else {
        assert.equal(r.status, 'fulfilled', `query ${i}: ${r.reason}`)
        assert.equal(r.value.rows[0].id, i)
      }
    })
    const r = await c.query('SELECT count(*)::int AS n FROM pipe')
    assert.equal(r.rows[0].n, 49, 'each Sync is its own transaction')
    const pids = await Promise.all([...Array(10).keys()].map(() => c.query('SELECT pg_backend_pid() AS p')))
    checkServers(new Set(pids.map((x) => x.rows[0].p)), 'a pipelined client')
  } finally {
    await c.end()
  }
}

async function scenarioSessionParams() {
  const a = await connect({ application_name: 'client-a', options: '-c TimeZone=Asia/Tokyo -c work_mem=7MB' })
  const b = await connect({ application_name: 'client-b', statement_timeout: 300 })
  try {
    await b.query("SET TimeZone = 'America/New_York'")
    await b.query("SET IntervalStyle = 'iso_8601'")
    const instant = "SELECT '2024-01-01 00:00:00+00'::timestamptz::text AS t"
    for (let i = 0; i < 3; i++) {
      assert.equal(await value(a, 'SHOW TimeZone'), 'Asia/Tokyo')
      assert.equal(await value(b, 'SHOW TimeZone'), 'America/New_York')
      assert.equal(await value(a, instant), '2024-01-01 09:00:00+09')
      assert.equal(await value(b, instant), '2023-12-31 19:00:00-05')
      assert.equal(await value(a, 'SHOW application_name'), 'client-a')
      assert.equal(await value(b, 'SHOW application_name'), 'client-b')
      assert.equal(await value(a, 'SHOW work_mem'), '7MB')
      assert.equal(await value(b, 'SHOW work_mem'), '4MB')
      assert.equal(await value(a, 'SHOW statement_timeout'), '0')
      assert.equal(await value(b, 'SHOW statement_timeout'), '300ms')
      assert.equal(await value(b, "SELECT interval '1 day'::text"), 'P1D')
      assert.equal(await value(a, "SELECT interval '1 day'::text"), '1 day')
    }
    if (POOLED) assert.equal(await backendPid(a), await backendPid(b), 'both clients share the one server')
    // The startup statement_timeout is b's alone: a may sleep longer on the same server.
    await rejects(() => b.query('SELECT pg_sleep(2)'), '57014', "b's statement_timeout")
    await a.query('SELECT pg_sleep(0.5)')
    assert.equal(a.reported.TimeZone, 'Asia/Tokyo')
    assert.equal(b.reported.TimeZone, 'America/New_York')
    assert.equal(b.reported.IntervalStyle, 'iso_8601')
    assert.equal(a.reported.application_name, 'client-a')

    // SET in a rolled back transaction, and SET LOCAL, do not stick.
    await a.query('BEGIN')
    await a.query("SET TimeZone = 'Europe/Paris'")
    assert.equal(a.reported.TimeZone, 'Europe/Paris')
    await a.query('ROLLBACK')
    assert.equal(a.reported.TimeZone, 'Asia/Tokyo')
    assert.equal(await value(a, 'SHOW TimeZone'), 'Asia/Tokyo')
    await a.query('BEGIN')
    await a.query("SET LOCAL application_name = 'local-name'")
    assert.equal(await value(a, 'SHOW application_name'), 'local-name')
    await a.query('COMMIT')
    assert.equal(await value(a, 'SHOW application_name'), 'client-a')
    await a.query("SET application_name = 'client-a2'")
    assert.equal(await value(a, 'SHOW application_name'), 'client-a2')
    assert.equal(await value(b, 'SHOW application_name'), 'client-b')
    assert.equal(b.reported.application_name, 'client-b')
    // So do settings PostgreSQL does not report, set by SET or by set_config() with a bind
    // parameter: Shardyard reads them back after the transaction that set them.
    await a.query('SET search_path = pg_catalog, public')
    await a.query("SELECT set_config('app.tenant', $1, false)", ['t-7'])
    const tenant = "SELECT coalesce(current_setting('app.tenant', true), '') AS t"
    for (let i = 0; i < 2; i++) {
      assert.equal(await value(a, 'SHOW search_path'), 'pg_catalog, public')
      assert.equal(await value(b, 'SHOW search_path'), '"$user", public')
      assert.equal(await value(a, tenant), 't-7')
      assert.equal(await value(b, tenant), '')
    }
    const c = await connect()
    assert.equal(await value(c, 'SHOW application_name'), '')
    assert.equal(await value(c, 'SHOW IntervalStyle'), 'postgres')
    assert.equal(await value(c, 'SHOW statement_timeout'), '0')
    assert.equal(await value(c, 'SHOW search_path'), '"$user", public')
    await c.end()
  } finally {
    await Promise.all([a.end(), b.end()])
  }
}

// COPY through pg's Submittable interface (what pg-copy-streams builds on).
class Copy {
  constructor(text, chunks = []) {
    this.text = text
    this.chunks = chunks
    this.out = []
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }

  submit(connection) {
    connection.query(this.text)
  }

  handleCopyInResponse(connection) {
    for (const chunk of this.chunks) connection.sendCopyFromChunk(chunk)
    connection.endCopyFrom()
  }

  handleCopyData(msg) {
    this.out.push(Buffer.from(msg.chunk)) // the chunk is a view of pg's reused read buffer
  }

  handleCommandComplete(msg) {
    this.rowCount = Number(msg.text.split(' ').pop())
  }

  handleError(err) {
    this.reject(err)
  }

  handleReadyForQuery() {
    this.resolve(this.rowCount)
  }

  handleRowDescription() {}
  handleDataRow() {}
  handleEmptyQuery() {}
  handlePortalSuspended() {}
}

async function copy(client, text, chunks) {
  const q = new Copy(text, chunks)
  client.query(q)
  const rowCount = await q.promise
  return { rowCount, data: Buffer.concat(q.out) }
}

async function scenarioCopy() {
  const c = await connect()
  const other = await connect()
  try {
    await c.query('CREATE TABLE copy_t (id int PRIMARY KEY, name text, amount numeric, note text)')
    const lines = []
    const canonical = []
    for (let i = 1; i <= 10000; i++) {
      const name = `name ${i} \u00e9\u00e8 ${i % 7 === 0 ? 'new' : 'old'}`
      const amount = `${i}.${String(i % 100).padStart(2, '0')}`
      const note = i % 3 === 0 ? null : `\u{1f600} ${i}`
      lines.push(`${i}\t${name}\t${amount}\t${note === null ? '\\N' : note}\n`)
      canonical.push(`${i}:${name}:${amount}:${note === null ? '<null>' : note}`)
    }
    const input = Buffer.from(lines.join(''))
    // Chunks that split messages and UTF-8 sequences anywhere.
    const chunks = []
    for (let at = 0; at < input.length; at += 7777) chunks.push(input.subarray(at, at + 7777))
    const copied = await copy(c, 'COPY copy_t FROM STDIN', chunks)
    assert.equal(copied.rowCount, 10000)
    const sum = await other.query(
      "SELECT count(*)::int AS n, md5(string_agg(id || ':' || name || ':' || amount || ':' ||" +
        " coalesce(note, '<null>'), ',' ORDER BY id)) AS md5 FROM copy_t"
    )
    assert.deepEqual(sum.rows[0], { n: 10000, md5: md5(canonical.join(',')) })
    const out = await copy(c, 'COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT')
    assert.equal(out.rowCount, 10000)
    assert.equal(md5(out.data), md5(input), 'COPY OUT gives back what COPY IN sent')

    // A COPY the server rejects, and pg's own COPY FROM STDIN (no stream: it sends CopyFail).
    await rejects(() => copy(c, 'COPY copy_t FROM STDIN', [Buffer.from('1\tdup\t1\t\\N\n')]), '23505', 'dup')
    const e = await rejects(() => c.query('COPY copy_t FROM STDIN'), '57014', 'CopyFail')
    assert.match(e.message, /No source stream defined/)
    assert.equal(await value(c, 'SELECT count(*)::int FROM copy_t'), 10000, 'usable after failed COPYs')
    // pg without a stream reads COPY TO STDOUT to its end and discards the data.
    const plain = await c.query('COPY (SELECT generate_series(1, 100)) TO STDOUT')
    assert.equal(plain.rowCount, 100)
    assert.equal(await value(c, 'SELECT 7'), 7)
  } finally {
    await Promise.all([c.end(), other.end()])
  }
}

async function scenarioCancel() {
  const c = await connect()
  try {
    // A CancelRequest, as pg sends it (Client#cancel on a fresh client) for a running query.
    const q = new pg.Query('SELECT pg_sleep(10)')
    const running = new Promise((resolve, reject) => {
      q.on('end', resolve)
      q.on('error', reject)
    })
    c.query(q)
    await sleep(500)
    const start = Date.now()
    new pg.Client().cancel(c, q)
    const e = await rejects(() => running, '57014', 'cancelled pg_sleep')
    const elapsed = (Date.now() - start) / 1000
    log(`cancel took ${elapsed.toFixed(2)}s after the request: ${e.message}`)
    assert.ok(elapsed < 1.5, `cancel took ${elapsed}s`)
    assert.equal(await value(c, 'SELECT 1'), 1, 'usable after the cancel')
    // query_timeout is pg's own client-side timer; statement_timeout is the server's.
    const st = await connect({ statement_timeout: 200 })
    await rejects(() => st.query('SELECT pg_sleep(5)'), '57014', 'statement_timeout')
    await st.end()
  } finally {
    await c.end()
  }
}

async function scenarioErrors() {
  const c = await connect()
  try {
    let e = await rejects(() => c.query("INSERT INTO items VALUES (1, 'dup')"), '23505', 'unique violation')
    assert.equal(e.constraint, 'items_pkey')
    assert.equal(e.table, 'items')
    assert.equal(e.detail, 'Key (id)=(1) already exists.')
    assert.equal(e.severity, 'ERROR')
    e = await rejects(() => c.query('SELECT * FROM no_such_table'), '42P01', 'undefined table')
    assert.equal(e.position, '15')
    await rejects(() => c.query('SELECT 1 / $1::int', [0]), '22012', 'division by zero (extended)')
    await rejects(() => c.query('SELECT 1/0'), '22012', 'division by zero (simple)')
    await rejects(() => c.query('SELEC 1'), '42601', 'syntax error')
    const raise = "DO $$ BEGIN RAISE EXCEPTION 'custom' USING HINT = 'a hint'; END $$"
    e = await rejects(() => c.query(raise), 'P0001', 'raise')
    assert.equal(e.hint, 'a hint')
    const notices = []
    c.on('notice', (n) => notices.push(`${n.severity} ${n.message}`))
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
    assert.deepEqual(notices, ['NOTICE hello 42'])
    assert.equal(await value(c, "SELECT 'still fine'"), 'still fine')
  } finally {
    await c.end()
  }
  if (!POOLED) return

  // Errors Shardyard itself sends: pool wait timeout and refused logins.
  const holder = await connect()
  const waiter = await connect()
  await holder.query('BEGIN')
  await holder.query('SELECT 1') // the only server is now held
  const start = Date.now()
  const e = await rejects(() => waiter.query('SELECT 1'), '57014', 'query_wait_timeout')
  const elapsed = (Date.now() - start) / 1000
  log(`query_wait_timeout after ${elapsed.toFixed(2)}s: ${e.message}`)
  assert.ok(elapsed >= 0.8 && elapsed < 5, `query_wait_timeout after ${elapsed}s (configured 1s)`)
  await holder.query('COMMIT')
  assert.equal(await value(waiter, "SELECT 'ok'"), 'ok')
  await Promise.all([holder.end(), waiter.end()])
  const refused = async (config, code, message) => {
    const client = new pg.Client(config)
    const err = await rejects(() => client.connect(), code, message)
    assert.equal(err.message, message)
    assert.equal(err.severity, 'FATAL')
  }
  await refused({ database: 'no_such_db' }, '3D000', 'database "no_such_db" does not exist')
  await refused({ password: 'wrong' }, '28P01', 'password authentication failed for user "app"')
  await refused({ user: 'nobody' }, '28P01', 'password authentication failed for user "nobody"')
}

async function scenarioAuth() {
  // SCRAM (app), md5 (md5user) and trust (trustuser) logins, each with its own pool.
  // PostgreSQL itself asks trustuser for its password (trustpw); Shardyard does not.
  const trustPassword = POOLED ? undefined : 'trustpw'
  for (const [user, password] of [['app', 'secret'], ['md5user', 'md5pw'], ['trustuser', trustPassword]]) {
    const c = await connect({ user, password })
    assert.equal(await value(c, 'SELECT current_user'), user)
    await c.end()
  }
  const bad = new pg.Client({ user: 'md5user', password: 'wrong' })
  await rejects(() => bad.connect(), '28P01', 'md5 login with a wrong password')
}

async function scenarioSessionMode() {
  assert.equal(MODE, 'session')
  const a = await connect()
  const b = await connect()
  try {
    // Named (server-side) prepared statements live as long as the session.
    for (let i = 0; i < 5; i++) {
      const r = await a.query({ name: 'double', text: 'SELECT $1::int * 2 AS v', values: [i] })
      assert.equal(r.rows[0].v, i * 2)
    }
    assert.deepEqual((await a.query('SELECT name FROM pg_prepared_statements')).rows, [{ name: 'double' }])
    assert.equal(await value(b, 'SELECT count(*)::int FROM pg_prepared_statements'), 0)
    const pa = new Set()
    const pb = new Set()
    for (let i = 0; i < 5; i++) {
      pa.add(await backendPid(a))
      pb.add(await backendPid(b))
    }
    assert.equal(pa.size, 1)
    assert.equal(pb.size, 1)
    assert.notDeepEqual(pa, pb)
    await a.query("SET work_mem = '9MB'")
    assert.equal(await value(a, 'SHOW work_mem'), '9MB')
    // LISTEN/NOTIFY: the notification arrives on its own, between queries.
    const heard = new Promise((resolve) => a.on('notification', (n) => resolve(`${n.channel} ${n.payload}`)))
    await a.query('LISTEN events')
    await b.query("NOTIFY events, 'hello'")
    const timeout = sleep(5000).then(() => 'no notification within 5s')
    assert.equal(await Promise.race([heard, timeout]), 'events hello')
  } finally {
    await Promise.all([a.end(), b.end()])
  }
  const c = await connect()
  assert.equal(await value(c, 'SELECT count(*)::int FROM pg_prepared_statements'), 0, 'a reused server is clean')
  assert.equal(await value(c, 'SHOW work_mem'), '4MB')
  await c.end()
}

async function scenarioNamedStatementsInTransactionMode() {
  // Named statements with clients sharing servers (what a later Shardyard issue adds).
  const clients = await Promise.all([...Array(4).keys()].map(() => connect()))
  try {
    for (let i = 0; i < 6; i++) {
      for (const [n, client] of clients.entries()) {
        const r = await client.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [i, n] })
        assert.equal(r.rows[0].v, i + n)
      }
    }
  } finally {
    await Promise.all(clients.map((x) => x.end()))
  }
}

async function scenarioNamedStatementIsolation() {
  // Issue 18: two clients give different queries the same name ('getitem'), interleaved, in
  // autocommit and in transactions. Each result is the client's own or an error (26000, with
  // a hint naming node-postgres outside a transaction block); never the other client's.
  const texts = {
    a: 'SELECT v FROM items WHERE id = $1',
    b: 'SELECT (id * 1000)::text AS v FROM items WHERE id = $1',
  }
  const want = { a: (i) => `item ${i}`, b: (i) => String(i * 1000) }
  const right = []
  const wrong = []
  const errors = []
  async function run(client, who, i, phase) {
    try {
      const r = await client.query({ name: 'getitem', text: texts[who], values: [i] })
      const got = r.rows[0].v
      ;(got === want[who](i) ? right : wrong).push({ who, i, phase, got })
    } catch (e) {
      errors.push({ who, i, phase, code: e.code, message: e.message, hint: e.hint, detail: e.detail })
      if (phase.endsWith(' transaction')) {  // the transaction failed: a new one goes on
        await client.query('ROLLBACK')
        await client.query('BEGIN')
      }
    }
  }

  // Autocommit, interleaved: each named query is a transaction of its own, on whichever server
  // connection is free.
  const a = await connect()
  const b = await connect()
  try {
    for (let i = 1; i <= 5; i++) {
      await run(a, 'a', i, 'autocommit')
      await run(b, 'b', i, 'autocommit')
    }
  } finally {
    await Promise.all([a.end(), b.end()])
  }

  // Transactions, interleaved (each client holds a server connection), then autocommit, then
  // a transaction again.
  const c = await connect()
  const d = await connect()
  try {
    await c.query('BEGIN')
    await d.query('BEGIN')
    if (POOLED) assert.notEqual(await backendPid(c), await backendPid(d), 'two server connections')
    for (let i = 1; i <= 5; i++) {
      await run(c, 'a', i, 'first transaction')
      await run(d, 'b', i, 'first transaction')
    }
    for (const [client, who] of [[c, 'a'], [d, 'b']]) {
      const r = await client.query('SELECT name, statement FROM pg_prepared_statements')
      assert.deepEqual(r.rows, [{ name: 'getitem', statement: texts[who] }], 'the client\'s statement')
    }
    await c.query('COMMIT')
    await d.query('COMMIT')
    for (let i = 1; i <= 5; i++) {
      await run(c, 'a', i, 'autocommit after transactions')
      await run(d, 'b', i, 'autocommit after transactions')
    }
    await c.query('BEGIN')
    await d.query('BEGIN')
    for (let i = 1; i <= 3; i++) {
      await run(c, 'a', i, 'second transaction')
      await run(d, 'b', i, 'second transaction')
    }
    await c.query('COMMIT')
    await d.query('COMMIT')
  } finally {
    await Promise.all([c.end(), d.end()])
  }

  for (const e of errors) log(`  ${e.who} ${e.phase} #${e.i}: ${e.code} ${e.message} (hint: ${e.hint})`)
  log(`${right.length} right, ${wrong.length} wrong, ${errors.length} errors`)
  assert.deepEqual(wrong, [], 'results that are another client\'s')
  assert.equal(right.filter((r) => r.phase === 'first transaction').length, 10, 'right within a transaction')
  if (!POOLED) {
    assert.deepEqual(errors, [], 'errors from PostgreSQL itself')
    return
  }
  for (const e of errors) {
    const what = `${e.who} ${e.phase} #${e.i}: ${e.message}`
    assert.equal(e.code, '26000', what)
    if (!e.phase.startsWith('autocommit')) {
      // Inside a transaction block PostgreSQL answers, for the name Shardyard gave the statement
      // so that it fails where it stands.
      assert.equal(e.message,
        'prepared statement "getitem (Shardyard: not prepared in this transaction)" does not exist', what)
      continue
    }
    // Shardyard's own answer (no server lent yet), with what to change.
    assert.equal(e.message, 'prepared statement "getitem" does not exist', what)
    assert.ok((e.hint || '').includes('node-postgres queries without a name'), `${what} hint: ${e.hint}`)
    assert.ok((e.detail || '').includes('Shardyard closes'), `${what} detail: ${e.detail}`)
  }
  assert.ok(errors.length > 0, 'node-postgres bound a statement closed at the end of its transaction')
}

const scenarios = {
  types: scenarioTypes,
  transactions: scenarioTransactions,
  pool: scenarioPool,
  pipeline: scenarioPipeline,
  session_params: scenarioSessionParams,
  copy: scenarioCopy,
  cancel: scenarioCancel,
  errors: scenarioErrors,
  auth: scenarioAuth,
  session_mode: scenarioSessionMode,
  named_statements_in_transaction_mode: scenarioNamedStatementsInTransactionMode,
  named_statement_isolation: scenarioNamedStatementIsolation,
}

async function main() {
  const name = process.argv[2]
  const fn = scenarios[name]
  if (!fn) {
    log(`unknown scenario ${name}`)
    process.exit(2)
  }
  const version = require('pg/package.json').version
  log(`pg ${version} (node ${process.version}), ${MODE} mode, pool size ${POOL_SIZE}: ${name}`)
  const start = Date.now()
  await fn()
  log(`PASS ${name} (${((Date.now() - start) / 1000).toFixed(2)}s)`)
  process.exit(0)
}

main().catch((e) => {
  console.log('FAIL', e && e.stack ? e.stack : e)
  if (e && e.code) console.log('code', e.code)
  process.exit(1)
})
