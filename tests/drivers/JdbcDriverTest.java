// pgjdbc scenarios run through Shardyard by drivers_test (jdbc_test.cc): one per args[0].

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyIn;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public final class JdbcDriverTest {
  static final String MODE = env("SY_MODE", "transaction");
  static final int POOL_SIZE = Integer.parseInt(env("SY_POOL_SIZE", "0"));
  // SY_DIRECT=1: talking to PostgreSQL itself (a reference run); checks about pooling are skipped.
  static final boolean POOLED = !"1".equals(System.getenv("SY_DIRECT"));

  private JdbcDriverTest() {}

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  static void log(String s) {
    System.out.println(s);
    System.out.flush();
  }

  static void eq(Object actual, Object expected, String what) {
    boolean same = expected instanceof byte[] && actual instanceof byte[]
        ? Arrays.equals((byte[]) expected, (byte[]) actual)
        : expected == null ? actual == null : expected.equals(actual);
    if (!same) {
      throw new AssertionError(what + ": expected <" + expected + ">, got <" + actual + ">");
    }
  }

  static void check(boolean cond, String what) {
    if (!cond) throw new AssertionError(what);
  }

  interface SqlAction {
    void run() throws Exception;
  }

  // Runs `action`, which must fail with SQLSTATE `state`; returns the exception.
  static SQLException fails(String state, SqlAction action, String what) throws Exception {
    try {
      action.run();
    } catch (SQLException e) {
      eq(e.getSQLState(), state, what + " (" + e.getMessage() + ")");
      return e;
    }
    throw new AssertionError(what + ": expected SQLSTATE " + state + ", nothing was thrown");
  }

  static String url(String database) {
    return "jdbc:postgresql://" + env("PGHOST", "127.0.0.1") + ":" + env("PGPORT", "5432") + "/"
        + database;
  }

  // A connection configured as docs/drivers.md says for the pool mode under test.
  static Connection connect(Properties extra) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", env("PGUSER", "app"));
    p.setProperty("password", env("PGPASSWORD", "secret"));
    p.setProperty("connectTimeout", "10");
    if (MODE.equals("transaction")) {
      // Named prepared statements do not outlive a transaction in transaction mode.
      p.setProperty("prepareThreshold", "0");
    }
    p.putAll(extra);
    return DriverManager.getConnection(url(p.getProperty("dbname", env("PGDATABASE", "app"))), p);
  }

  static Connection connect() throws SQLException {
    return connect(new Properties());
  }

  static Properties props(String... kv) {
    Properties p = new Properties();
    for (int i = 0; i < kv.length; i += 2) p.setProperty(kv[i], kv[i + 1]);
    return p;
  }

  static String one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
      check(rs.next(), "a row from " + sql);
      return rs.getString(1);
    }
  }

  static void exec(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) {
      s.execute(sql);
    }
  }

  static int backendPid(Connection c) throws SQLException {
    return Integer.parseInt(one(c, "SELECT pg_backend_pid()"));
  }

  static void checkServers(Set<Integer> pids, String what) {
    log(what + ": " + pids.size() + " server backends");
    if (POOLED) {
      check(pids.size() <= POOL_SIZE, what + ": " + pids.size() + " servers for pool size "
          + POOL_SIZE);
    }
  }

  static String md5(byte[] data) throws Exception {
    StringBuilder sb = new StringBuilder();
    for (byte b : MessageDigest.getInstance("MD5").digest(data)) {
      sb.append(String.format("%02x", b));
    }
    return sb.toString();
  }

  // -------------------------------------------------------------------------------------------

  static final String UNICODE =
      "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \ud83d\ude00 'quote' \"dq\" \\ back";

  static void types() throws Exception {
    try (Connection c = connect();
        Connection simple = connect(props("preferQueryMode", "simple"))) {
      PGConnection pgc = c.unwrap(PGConnection.class);
      eq(pgc.getParameterStatus("client_encoding"), "UTF8", "client_encoding");
      eq(pgc.getParameterStatus("integer_datetimes"), "on", "integer_datetimes");
      check(c.getMetaData().getDatabaseMajorVersion() >= 15, "server version");
      check(pgc.getBackendPID() != 0, "BackendKeyData received");
      for (Connection x : List.of(c, simple)) {
        eq(one(x, "SELECT count(*) FROM items"), "10", "plain statement");
        try (Statement s = x.createStatement()) {
          check(!s.execute("SET extra_float_digits = 3; SELECT 1"), "first result is SET");
          check(s.getMoreResults(), "second result of a multi-statement query");
          try (ResultSet rs = s.getResultSet()) {
            check(rs.next() && rs.getInt(1) == 1, "SELECT 1 after SET");
          }
        }
      }
      exec(c, "CREATE TABLE types_t (id int PRIMARY KEY, n numeric, ts timestamptz, b bytea,"
          + " j jsonb, u text, a int[], uu uuid, f float8, bo bool, big bigint)");
      BigDecimal n = new BigDecimal("12345678901234567890.123456789012345678901234567890");
      OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 23, 59, 59, 123456000,
          ZoneOffset.ofHours(-5));
      byte[] bytes = new byte[256];
      for (int i = 0; i < 256; i++) bytes[i] = (byte) i;
      String json = "{\"k\": [\"\u00fc\", 1, null, true], \"n\": 1.5}";
      UUID uuid = UUID.fromString("12345678-1234-5678-1234-567812345678");
      for (Connection x : List.of(c, simple)) {
        int base = x == c ? 0 : 10;
        // pgjdbc cannot inline a binary (bytea) parameter in simple mode: send it as hex there.
        boolean isSimple = x == simple;
        try (PreparedStatement ps = x.prepareStatement("INSERT INTO types_t VALUES (?, ?, ?, "
            + (isSimple ? "decode(?, 'hex')" : "?") + ", ?::jsonb, ?, ?, ?, ?, ?, ?)")) {
          ps.setInt(1, base + 1);
          ps.setBigDecimal(2, n);
          ps.setObject(3, ts);
          if (isSimple) {
            ps.setString(4, HexFormat.of().formatHex(bytes));
          } else {
            ps.setBytes(4, bytes);
          }
          ps.setString(5, json);
          ps.setString(6, UNICODE);
          ps.setArray(7, x.createArrayOf("int4", new Integer[] {1, null, 3}));
          ps.setObject(8, uuid);
          ps.setDouble(9, 0.1);
          ps.setBoolean(10, true);
          ps.setLong(11, Long.MIN_VALUE);
          eq(ps.executeUpdate(), 1, "insert");
          ps.setInt(1, base + 2);
          for (int i = 2; i <= 11; i++) ps.setNull(i, Types.OTHER);
          ps.setNull(4, isSimple ? Types.VARCHAR : Types.BINARY);
          eq(ps.executeUpdate(), 1, "insert of NULLs");
        }
        try (PreparedStatement ps = x.prepareStatement(
            "SELECT n, ts, b, j, u, a, uu, f, bo, big FROM types_t WHERE id = ?")) {
          ps.setInt(1, base + 1);
          try (ResultSet rs = ps.executeQuery()) {
            check(rs.next(), "row 1");
            eq(rs.getBigDecimal(1), n, "numeric");
            eq(rs.getObject(2, OffsetDateTime.class).toInstant(), ts.toInstant(), "timestamptz");
            eq(rs.getBytes(3), bytes, "bytea");
            eq(rs.getString(4), "{\"k\": [\"\u00fc\", 1, null, true], \"n\": 1.5}", "jsonb");
            eq(rs.getString(5), UNICODE, "unicode text");
            Array a = rs.getArray(6);
            eq(Arrays.asList((Object[]) a.getArray()), Arrays.asList(1, null, 3), "int[]");
            eq(rs.getObject(7), uuid, "uuid");
            eq(rs.getDouble(8), 0.1, "float8");
            eq(rs.getBoolean(9), true, "bool");
            eq(rs.getLong(10), Long.MIN_VALUE, "bigint");
          }
          ps.setInt(1, base + 2);
          try (ResultSet rs = ps.executeQuery()) {
            check(rs.next(), "row 2");
            for (int i = 1; i <= 10; i++) {
              eq(rs.getObject(i), null, "NULL column " + i);
            }
          }
        }
      }
      eq(one(c, "SELECT string_agg(octet_length(b) || ' ' || md5(b) || ' ' || length(u), ','"
          + " ORDER BY id) FROM types_t WHERE b IS NOT NULL"),
          "256 " + md5(bytes) + " " + UNICODE.codePointCount(0, UNICODE.length()) + ",256 "
              + md5(bytes) + " " + UNICODE.codePointCount(0, UNICODE.length()),
          "values as the server stored them");

      // isValid (an empty query), and 8 MB values both ways.
      check(c.isValid(5), "isValid");
      byte[] big = new byte[8 << 20];
      for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 7);
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT md5(?::bytea), ?::bytea, repeat('\u00e9', 4000000)")) {
        ps.setBytes(1, big);
        ps.setBytes(2, big);
        try (ResultSet rs = ps.executeQuery()) {
          check(rs.next(), "row");
          eq(rs.getString(1), md5(big), "8 MB parameter");
          eq(rs.getBytes(2), big, "8 MB result");
          eq(rs.getString(3), "\u00e9".repeat(4000000), "8 MB text result");
        }
      }

      // Batches: many Bind/Execute before one Sync, and a rewritten multi-row insert.
      exec(c, "CREATE TABLE batch_t (id int PRIMARY KEY, v text)");
      try (Connection rewrite = connect(props("reWriteBatchedInserts", "true"))) {
        for (Connection x : List.of(c, rewrite)) {
          int base = x == c ? 0 : 1000;
          try (PreparedStatement ps = x.prepareStatement("INSERT INTO batch_t VALUES (?, ?)")) {
            for (int i = 0; i < 500; i++) {
              ps.setInt(1, base + i);
              ps.setString(2, "v" + i);
              ps.addBatch();
            }
            int total = 0;
            for (int r : ps.executeBatch()) total += r == Statement.SUCCESS_NO_INFO ? 1 : r;
            eq(total, 500, "batch rows");
          }
        }
      }
      eq(one(c, "SELECT count(*) FROM batch_t"), "1000", "rows inserted by batches");

      // A fetch size in a transaction: the portal is executed in steps.
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT g, repeat('x', g) FROM generate_series(1, 1000) g WHERE g > ?")) {
        ps.setFetchSize(64);
        ps.setInt(1, 0);
        long sum = 0;
        int rows = 0;
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            sum += rs.getInt(1);
            eq(rs.getString(2).length(), rs.getInt(1), "row width");
            rows++;
          }
        }
        eq(rows, 1000, "rows through a fetch size");
        eq(sum, 500500L, "sum through a fetch size");
      }
      c.commit();
    }
  }

  static void waitForAServer(Connection a, Connection b, Connection c) throws Exception {
    // Pool size 2, both servers in open transactions: c waits, then sees a's commit only.
    a.setAutoCommit(false);
    b.setAutoCommit(false);
    exec(a, "INSERT INTO ledger VALUES (500, 'held', 1)");
    exec(b, "INSERT INTO ledger VALUES (501, 'held', 1)");
    long[] doneAt = {0};
    String[] seen = {null};
    Thread third = new Thread(() -> {
      try {
        seen[0] = one(c, "SELECT count(*) FROM ledger WHERE who = 'held'");
        doneAt[0] = System.nanoTime();
      } catch (SQLException e) {
        seen[0] = e.toString();
      }
    });
    third.start();
    Thread.sleep(500);
    check(third.isAlive(), "the third client waited for a server");
    long committedAt = System.nanoTime();
    a.commit();
    third.join(10000);
    eq(seen[0], "1", "the third client sees the committed row only");
    check(doneAt[0] >= committedAt, "the third client ran after the commit");
    b.rollback();
    a.setAutoCommit(true);
    b.setAutoCommit(true);
  }

  static void transactions() throws Exception {
    try (Connection admin = connect(); Connection c = connect()) {
      exec(admin, "CREATE TABLE ledger (id int PRIMARY KEY, who text, amount int)");
      c.setAutoCommit(false);
      exec(c, "INSERT INTO ledger VALUES (1, 'a', 10)");
      eq(one(admin, "SELECT count(*) FROM ledger"), "0", "uncommitted row invisible");
      c.commit();
      eq(one(admin, "SELECT count(*) FROM ledger"), "1", "committed row visible");
      exec(c, "INSERT INTO ledger VALUES (2, 'a', 20)");
      c.rollback();
      eq(one(admin, "SELECT count(*) FROM ledger"), "1", "rolled back row gone");

      // An error inside a transaction aborts it until rollback.
      exec(c, "INSERT INTO ledger VALUES (3, 'a', 30)");
      fails("23505", () -> exec(c, "INSERT INTO ledger VALUES (1, 'dup', 0)"), "duplicate");
      fails("25P02", () -> one(c, "SELECT 1"), "statement in an aborted transaction");
      c.rollback();
      eq(one(c, "SELECT 1"), "1", "usable after rollback");
      c.commit();
      eq(one(admin, "SELECT count(*) FROM ledger WHERE id = 3"), "0", "failed tx rolled back");

      // Savepoints through the JDBC API.
      exec(c, "INSERT INTO ledger VALUES (10, 'sp', 1)");
      Savepoint s1 = c.setSavepoint("s1");
      fails("23505", () -> exec(c, "INSERT INTO ledger VALUES (10, 'sp', 2)"), "after savepoint");
      c.rollback(s1);
      exec(c, "INSERT INTO ledger VALUES (11, 'sp', 3)");
      Savepoint s2 = c.setSavepoint();
      exec(c, "INSERT INTO ledger VALUES (12, 'sp', 4)");
      c.releaseSavepoint(s2);
      Savepoint s3 = c.setSavepoint();
      exec(c, "INSERT INTO ledger VALUES (13, 'sp', 5)");
      c.rollback(s3);
      c.commit();
      eq(one(admin, "SELECT string_agg(id::text, ',' ORDER BY id) FROM ledger WHERE who = 'sp'"),
          "10,11,12", "rows around savepoints");
      // A batch that fails part way inside a transaction.
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO ledger VALUES (?, 'batch', 0)")) {
        for (int id : new int[] {20, 21, 1, 22}) {
          ps.setInt(1, id);
          ps.addBatch();
        }
        try {
          ps.executeBatch();
          throw new AssertionError("the batch with a duplicate key did not fail");
        } catch (BatchUpdateException e) {
          eq(e.getSQLState(), "23505", "batch failure");
        }
      }
      c.rollback();
      eq(one(admin, "SELECT count(*) FROM ledger WHERE who = 'batch'"), "0", "batch rolled back");
      c.setAutoCommit(true);
    }

    // A transaction keeps its server; clients share the pool's servers.
    try (Connection a = connect(); Connection b = connect(); Connection c = connect()) {
      a.setAutoCommit(false);
      Set<Integer> inTx = new HashSet<>();
      for (int i = 0; i < 5; i++) inTx.add(backendPid(a));
      a.commit();
      a.setAutoCommit(true);
      eq(inTx.size(), 1, "one server for a whole transaction");
      Set<Integer> seen = new HashSet<>();
      for (int i = 0; i < 10; i++) {
        for (Connection x : List.of(a, b, c)) seen.add(backendPid(x));
      }
      checkServers(seen, "three connections");
      if (POOLED && POOL_SIZE == 2) waitForAServer(a, b, c);
    }

    // Threads, each with its own connection, over the small pool.
    Set<Integer> pids = ConcurrentHashMap.newKeySet();
    List<String> failures = new CopyOnWriteArrayList<>();
    List<Thread> threads = new ArrayList<>();
    for (int w = 0; w < 6; w++) {
      final int worker = w;
      Thread t = new Thread(() -> {
        try (Connection x = connect()) {
          x.setAutoCommit(false);
          try (PreparedStatement ins = x.prepareStatement("INSERT INTO ledger VALUES (?, ?, ?)")) {
            for (int i = 0; i < 20; i++) {
              ins.setInt(1, 10000 + worker * 100 + i);
              ins.setString(2, "w" + worker);
              ins.setInt(3, i);
              ins.executeUpdate();
              pids.add(backendPid(x));
              if (i % 5 == 4) {
                x.rollback();
              } else {
                x.commit();
              }
            }
          }
        } catch (Exception e) {
          failures.add("worker " + worker + ": " + e);
        }
      });
      threads.add(t);
      t.start();
    }
    for (Thread t : threads) t.join(60000);
    eq(failures.toString(), "[]", "worker failures");
    try (Connection c = connect()) {
      eq(one(c, "SELECT count(*) FROM ledger WHERE who LIKE 'w%'"), String.valueOf(6 * 16),
          "rows committed by the threads");
    }
    checkServers(pids, "six threads");
  }

  static void sessionParams() throws Exception {
    // pgjdbc sends the JVM's zone (America/Sao_Paulo here) as the TimeZone startup parameter.
    try (Connection a = connect(props("ApplicationName", "client-a", "options", "-c work_mem=7MB"));
        Connection b = connect(props("ApplicationName", "client-b"))) {
      exec(b, "SET TimeZone = 'America/New_York'");
      String instant = "SELECT '2024-01-01 00:00:00+00'::timestamptz::text";
      for (int i = 0; i < 3; i++) {
        eq(one(a, "SHOW TimeZone"), "America/Sao_Paulo", "a's TimeZone");
        eq(one(b, "SHOW TimeZone"), "America/New_York", "b's TimeZone");
        eq(one(a, instant), "2023-12-31 21:00:00-03", "a's rendering");
        eq(one(b, instant), "2023-12-31 19:00:00-05", "b's rendering");
        eq(one(a, "SHOW application_name"), "client-a", "a's application_name");
        eq(one(b, "SHOW application_name"), "client-b", "b's application_name");
        eq(one(a, "SHOW work_mem"), "7MB", "a's startup work_mem");
        eq(one(b, "SHOW work_mem"), "4MB", "b's work_mem");
        eq(one(a, "SHOW extra_float_digits"), "3", "pgjdbc's extra_float_digits");
      }
      if (POOLED) eq(backendPid(a), backendPid(b), "both clients share the one server");
      PGConnection pa = a.unwrap(PGConnection.class);
      PGConnection pb = b.unwrap(PGConnection.class);
      eq(pa.getParameterStatus("TimeZone"), "America/Sao_Paulo", "a's reported TimeZone");
      eq(pb.getParameterStatus("TimeZone"), "America/New_York", "b's reported TimeZone");
      eq(pa.getParameterStatus("application_name"), "client-a", "a's reported name");
      // setClientInfo("ApplicationName") runs SET application_name.
      b.setClientInfo("ApplicationName", "client-b2");
      eq(one(b, "SHOW application_name"), "client-b2", "b's new name");
      eq(one(a, "SHOW application_name"), "client-a", "a's name unchanged");
      eq(pb.getParameterStatus("application_name"), "client-b2", "b's reported new name");
      // A rolled back SET and SET LOCAL do not stick.
      a.setAutoCommit(false);
      exec(a, "SET TimeZone = 'Europe/Paris'");
      eq(pa.getParameterStatus("TimeZone"), "Europe/Paris", "reported inside the transaction");
      a.rollback();
      eq(one(a, "SHOW TimeZone"), "America/Sao_Paulo", "after rollback");
      eq(pa.getParameterStatus("TimeZone"), "America/Sao_Paulo", "reported after rollback");
      exec(a, "SET LOCAL application_name = 'local-name'");
      eq(one(a, "SHOW application_name"), "local-name", "SET LOCAL");
      a.commit();
      a.setAutoCommit(true);
      eq(one(a, "SHOW application_name"), "client-a", "after SET LOCAL");
      eq(one(b, "SHOW TimeZone"), "America/New_York", "b unchanged");
      // Settings PostgreSQL does not report are read back after the transaction that set them:
      // setSchema runs SET SESSION search_path; a prepared set_config() runs with a parameter.
      a.setSchema("pg_catalog");
      try (PreparedStatement ps = a.prepareStatement("SELECT set_config('app.tenant', ?, false)")) {
        ps.setString(1, "t-9");
        ps.executeQuery().close();
      }
      String tenant = "SELECT coalesce(current_setting('app.tenant', true), '')";
      for (int i = 0; i < 2; i++) {
        eq(one(a, "SELECT current_schema()"), "pg_catalog", "a's schema");
        eq(one(b, "SELECT current_schema()"), "public", "b's schema");
        eq(one(a, tenant), "t-9", "a's custom setting");
        eq(one(b, tenant), "", "b's custom setting");
      }
    }
  }

  static void optionsAfterStartupParameters() throws Exception {
    // pgjdbc puts "options" last in the startup packet, after TimeZone; PostgreSQL applies the
    // options first and the other parameters after, so the TimeZone parameter wins.
    try (Connection c = connect(props("options", "-c TimeZone=Asia/Tokyo"))) {
      eq(one(c, "SHOW TimeZone"), "America/Sao_Paulo", "TimeZone parameter over options");
      eq(c.unwrap(PGConnection.class).getParameterStatus("TimeZone"), "America/Sao_Paulo",
          "reported TimeZone");
    }
  }

  static void copy() throws Exception {
    StringBuilder input = new StringBuilder();
    StringBuilder canonical = new StringBuilder();
    for (int i = 1; i <= 10000; i++) {
      String name = "name " + i + " \u00e9\u00e8 " + (i % 7 == 0 ? "new" : "old");
      String amount = i + "." + String.format("%02d", i % 100);
      String note = i % 3 == 0 ? null : "\ud83d\ude00 " + i;
      input.append(i).append('\t').append(name).append('\t').append(amount).append('\t')
          .append(note == null ? "\\N" : note).append('\n');
      if (i > 1) canonical.append(',');
      canonical.append(i).append(':').append(name).append(':').append(amount).append(':')
          .append(note == null ? "<null>" : note);
    }
    try (Connection c = connect(); Connection other = connect()) {
      exec(c, "CREATE TABLE copy_t (id int PRIMARY KEY, name text, amount numeric, note text)");
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      long in = cm.copyIn("COPY copy_t FROM STDIN", new StringReader(input.toString()));
      eq(in, 10000L, "rows copied in");
      eq(one(other, "SELECT count(*) || ' ' || md5(string_agg(id || ':' || name || ':' || amount"
          + " || ':' || coalesce(note, '<null>'), ',' ORDER BY id)) FROM copy_t"),
          "10000 " + md5(canonical.toString().getBytes(StandardCharsets.UTF_8)), "server checksum");
      StringWriter out = new StringWriter();
      long n = cm.copyOut("COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT", out);
      eq(n, 10000L, "rows copied out");
      eq(md5(out.toString().getBytes(StandardCharsets.UTF_8)),
          md5(input.toString().getBytes(StandardCharsets.UTF_8)), "COPY OUT equals COPY IN");
      ByteArrayOutputStream bin = new ByteArrayOutputStream();
      cm.copyOut("COPY copy_t TO STDOUT (FORMAT BINARY)", bin);
      check(bin.size() > 200000, "binary COPY OUT size " + bin.size());

      // Errors: a duplicate key, and a COPY the client abandons (CopyFail).
      fails("23505", () -> cm.copyIn("COPY copy_t FROM STDIN", new StringReader("1\tx\t1\t\\N\n")),
          "COPY with a duplicate key");
      CopyIn copyIn = cm.copyIn("COPY copy_t FROM STDIN");
      byte[] row = "20001\tabandoned\t1\t\\N\n".getBytes(StandardCharsets.UTF_8);
      copyIn.writeToCopy(row, 0, row.length);
      copyIn.cancelCopy();
      eq(one(c, "SELECT count(*) FROM copy_t"), "10000", "usable after failed COPYs");
      // COPY in a transaction that rolls back.
      c.setAutoCommit(false);
      cm.copyIn("COPY copy_t FROM STDIN", new StringReader("20002\ttx\t1\t\\N\n"));
      eq(one(c, "SELECT count(*) FROM copy_t"), "10001", "inside the transaction");
      c.rollback();
      c.setAutoCommit(true);
      eq(one(other, "SELECT count(*) FROM copy_t"), "10000", "rolled back");
    }
  }

  static void cancel() throws Exception {
    try (Connection c = connect(); Statement s = c.createStatement()) {
      long[] cancelledAt = {0};
      Thread canceller = new Thread(() -> {
        try {
          Thread.sleep(500);
          cancelledAt[0] = System.nanoTime();
          s.cancel();
        } catch (Exception e) {
          log("cancel failed: " + e);
        }
      });
      canceller.start();
      fails("57014", () -> s.executeQuery("SELECT pg_sleep(10)"), "Statement.cancel");
      double elapsed = (System.nanoTime() - cancelledAt[0]) / 1e9;
      canceller.join();
      log(String.format("Statement.cancel: the error arrived %.3fs after the cancel", elapsed));
      check(elapsed < 1.5, "cancel took " + elapsed + "s");
      eq(one(c, "SELECT 1"), "1", "usable after the cancel");

      // setQueryTimeout: pgjdbc sends a cancel request when the timer fires.
      try (PreparedStatement ps = c.prepareStatement("SELECT pg_sleep(?)")) {
        ps.setQueryTimeout(1);
        ps.setInt(1, 10);
        long start = System.nanoTime();
        fails("57014", ps::executeQuery, "setQueryTimeout");
        elapsed = (System.nanoTime() - start) / 1e9;
        check(elapsed >= 0.9 && elapsed < 3.0, "query timeout took " + elapsed + "s");
      }
      // Inside a transaction.
      c.setAutoCommit(false);
      Thread t = new Thread(() -> {
        try {
          Thread.sleep(300);
          s.cancel();
        } catch (Exception e) {
          log("cancel failed: " + e);
        }
      });
      t.start();
      fails("57014", () -> s.executeQuery("SELECT pg_sleep(10)"), "cancel in a transaction");
      t.join();
      fails("25P02", () -> one(c, "SELECT 1"), "aborted transaction");
      c.rollback();
      c.setAutoCommit(true);
      eq(one(c, "SELECT 2"), "2", "usable after rollback");
    }
  }

  static void errors() throws Exception {
    try (Connection c = connect()) {
      SQLException e = fails("23505", () -> exec(c, "INSERT INTO items VALUES (1, 'dup')"), "dup");
      ServerErrorMessage m = ((PSQLException) e).getServerErrorMessage();
      eq(m.getConstraint(), "items_pkey", "constraint");
      eq(m.getTable(), "items", "table");
      eq(m.getDetail(), "Key (id)=(1) already exists.", "detail");
      eq(m.getSeverity(), "ERROR", "severity");
      e = fails("42P01", () -> one(c, "SELECT * FROM no_such_table"), "undefined table");
      eq(((PSQLException) e).getServerErrorMessage().getPosition(), 15, "position");
      try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?")) {
        ps.setInt(1, 0);
        fails("22012", ps::executeQuery, "division by zero (parameter)");
      }
      fails("22012", () -> one(c, "SELECT 1/0"), "division by zero");
      fails("42601", () -> one(c, "SELEC 1"), "syntax error");
      e = fails("P0001", () -> exec(c,
          "DO $$ BEGIN RAISE EXCEPTION 'custom' USING HINT = 'a hint'; END $$"), "raise");
      eq(((PSQLException) e).getServerErrorMessage().getHint(), "a hint", "hint");
      try (Statement s = c.createStatement()) {
        s.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$");
        check(s.getWarnings() != null, "notice as a warning");
        eq(s.getWarnings().getMessage(), "hello 42", "notice text");
      }
      eq(one(c, "SELECT 'still fine'"), "still fine", "usable");
    }
    if (!POOLED) return;

    // Errors Shardyard itself sends: pool wait timeout and refused logins.
    try (Connection holder = connect(); Connection waiter = connect()) {
      holder.setAutoCommit(false);
      one(holder, "SELECT 1");  // the only server is now held
      long start = System.nanoTime();
      SQLException e = fails("57014", () -> one(waiter, "SELECT 1"), "query_wait_timeout");
      double elapsed = (System.nanoTime() - start) / 1e9;
      log(String.format("query_wait_timeout after %.2fs: %s", elapsed, e.getMessage()));
      check(elapsed >= 0.8 && elapsed < 5, "query_wait_timeout after " + elapsed + "s");
      holder.commit();
      eq(one(waiter, "SELECT 'ok'"), "ok", "usable after the timeout");
    }
    fails("3D000", () -> connect(props("dbname", "no_such_db")).close(), "unknown database");
    fails("28P01", () -> connect(props("password", "wrong")).close(), "wrong password");
    fails("28P01", () -> connect(props("user", "nobody")).close(), "unknown user");
  }

  static void auth() throws Exception {
    // SCRAM (app), md5 (md5user) and trust (trustuser) logins, each with its own pool.
    // PostgreSQL itself asks trustuser for its password (trustpw); Shardyard does not.
    String trustPassword = POOLED ? "" : "trustpw";
    String[][] logins = {{"app", "secret"}, {"md5user", "md5pw"}, {"trustuser", trustPassword}};
    for (String[] login : logins) {
      try (Connection c = connect(props("user", login[0], "password", login[1]))) {
        eq(one(c, "SELECT current_user"), login[0], login[0] + " logged in");
      }
    }
    fails("28P01", () -> connect(props("user", "md5user", "password", "wrong")).close(), "md5");
  }

  static void sessionMode() throws Exception {
    eq(MODE, "session", "mode");
    // pgjdbc's defaults (prepareThreshold=5, binary transfer), and forced binary (-1).
    try (Connection a = connect(); Connection b = connect(props("prepareThreshold", "-1"))) {
      for (Connection x : List.of(a, b)) {
        try (PreparedStatement ps = x.prepareStatement(
            "SELECT ?::int * 2, now()::timestamptz, ?::numeric, ?::bytea")) {
          for (int i = 0; i < 8; i++) {
            ps.setInt(1, i);
            ps.setBigDecimal(2, new BigDecimal("1.50"));
            ps.setBytes(3, new byte[] {0, (byte) 255, (byte) i});
            try (ResultSet rs = ps.executeQuery()) {
              check(rs.next(), "row");
              eq(rs.getInt(1), i * 2, "int");
              check(rs.getObject(2, OffsetDateTime.class) != null, "timestamptz");
              eq(rs.getBigDecimal(3), new BigDecimal("1.50"), "numeric");
              eq(rs.getBytes(4), new byte[] {0, (byte) 255, (byte) i}, "bytea");
            }
          }
          check(ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(),
              "server-prepared after the threshold");
        }
        check(Integer.parseInt(one(x, "SELECT count(*) FROM pg_prepared_statements")) >= 1,
            "named statements on the server");
      }
      Set<Integer> pa = new HashSet<>();
      Set<Integer> pb = new HashSet<>();
      for (int i = 0; i < 5; i++) {
        pa.add(backendPid(a));
        pb.add(backendPid(b));
      }
      eq(pa.size(), 1, "a keeps one server");
      eq(pb.size(), 1, "b keeps one server");
      check(!pa.equals(pb), "a and b have different servers");
      // LISTEN/NOTIFY: getNotifications waits for the notification to arrive.
      exec(a, "LISTEN events");
      exec(b, "NOTIFY events, 'hello'");
      org.postgresql.PGNotification[] heard =
          a.unwrap(PGConnection.class).getNotifications(5000);
      check(heard != null && heard.length == 1, "one notification");
      eq(heard[0].getName() + " " + heard[0].getParameter(), "events hello", "notification");
    }
    try (Connection c = connect()) {
      eq(one(c, "SELECT count(*) FROM pg_prepared_statements"), "0", "a reused server is clean");
    }
  }

  static void defaultPrepareInTransactionMode() throws Exception {
    // pgjdbc's defaults (prepareThreshold=5) with connections sharing servers.
    List<Connection> conns = new ArrayList<>();
    try {
      for (int i = 0; i < 4; i++) conns.add(connect(props("prepareThreshold", "5")));
      for (int i = 0; i < 10; i++) {
        for (int n = 0; n < conns.size(); n++) {
          try (PreparedStatement ps = conns.get(n).prepareStatement("SELECT ?::int + ?::int")) {
            ps.setInt(1, i);
            ps.setInt(2, n);
            try (ResultSet rs = ps.executeQuery()) {
              check(rs.next(), "row");
              eq(rs.getInt(1), i + n, "sum");
            }
          }
        }
      }
    } finally {
      for (Connection c : conns) c.close();
    }
  }

  // Issue 18: pgjdbc's default prepareThreshold (5) on two connections whose statements of
  // different SQL get the same server-side names (S_1, ...). Each result is the connection's own
  // or an error (26000, inside a transaction block); never the other connection's. In autocommit
  // pgjdbc prepares again on 26000 by itself, so no error reaches the application there.
  static void preparedIsolation() throws Exception {
    String aSql = "SELECT v FROM items WHERE id = ?";
    String bSql = "SELECT (id * 1000)::text FROM items WHERE id = ?";
    List<String> wrong = new ArrayList<>();
    List<String> failures = new ArrayList<>();
    int[] right = new int[2];  // in autocommit, in transaction blocks
    try (Connection a = connect(props("prepareThreshold", "5"));
        Connection b = connect(props("prepareThreshold", "5"));
        PreparedStatement pa = a.prepareStatement(aSql);
        PreparedStatement pb = b.prepareStatement(bSql)) {
      List<Object[]> clients = List.of(new Object[] {"a", a, pa}, new Object[] {"b", b, pb});
      for (String phase : List.of("autocommit", "transactions", "autocommit again")) {
        boolean inTransaction = phase.equals("transactions");
        a.setAutoCommit(!inTransaction);
        b.setAutoCommit(!inTransaction);
        for (int round = 0; round < (inTransaction ? 3 : 1); round++) {
          for (int i = 1; i <= (inTransaction ? 5 : 12); i++) {
            for (Object[] client : clients) {
              String who = (String) client[0];
              Connection c = (Connection) client[1];
              PreparedStatement ps = (PreparedStatement) client[2];
              int id = (i - 1) % 10 + 1;  // items has ids 1 to 10
              String want = who.equals("a") ? "item " + id : String.valueOf(id * 1000);
              String what = who + " " + phase + " " + round + " #" + i;
              ps.setInt(1, id);
              try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), what + ": a row");
                String got = rs.getString(1);
                if (got.equals(want)) {
                  right[inTransaction ? 1 : 0]++;
                } else {
                  wrong.add(what + ": wanted " + want + ", got " + got);
                }
              } catch (SQLException e) {
                failures.add(what + ": " + e.getSQLState() + " " + e.getMessage());
                if (!inTransaction) continue;
                eq(e.getSQLState(), "26000", what + " (" + e.getMessage() + ")");
                check(e.getMessage().contains("does not exist"), what + ": " + e.getMessage());
                c.rollback();  // the next execution begins a new transaction
              }
            }
          }
          if (inTransaction) {
            if (POOLED) check(backendPid(a) != backendPid(b), "a and b hold two servers");
            // Each connection's server has its own statement (server-prepared), not the other's.
            for (Object[] client : clients) {
              Connection c = (Connection) client[1];
              String mine = (client[0].equals("a") ? aSql : bSql).replace("?", "$1");
              String theirs = (client[0].equals("a") ? bSql : aSql).replace("?", "$1");
              String listed = one(c, "SELECT string_agg(statement, ' | ') FROM "
                  + "pg_prepared_statements");
              check(listed != null && listed.contains(mine), client[0] + " has " + listed);
              check(!listed.contains(theirs), client[0] + " has the other's statement: " + listed);
            }
            a.commit();
            b.commit();
          }
        }
        check(pa.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(),
            "a's statement is server-prepared after the threshold");
      }
    }
    for (String f : failures) log("  " + f);
    log(right[0] + " right in autocommit, " + right[1] + " right in transaction blocks, "
        + wrong.size() + " wrong, " + failures.size() + " errors");
    eq(wrong, List.of(), "results that are the other connection's");
    eq(right[0], 48, "right results in autocommit (pgjdbc prepares again on 26000)");
    check(right[1] >= 2 * 3 * 4, "right results in transaction blocks: " + right[1]);
    if (!POOLED) eq(failures, List.of(), "errors from PostgreSQL itself");
  }

  public static void main(String[] args) throws Exception {
    String name = args[0];
    log("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + " (Java "
        + System.getProperty("java.version") + "), " + MODE + " mode, pool size " + POOL_SIZE
        + ": " + name);
    Thread watchdog = new Thread(() -> {
      try {
        Thread.sleep(TimeUnit.SECONDS.toMillis(90));
        log("TIMEOUT: scenario still running after 90s");
        Thread.getAllStackTraces().forEach((t, st) -> log(t + " " + Arrays.toString(st)));
        System.exit(3);
      } catch (InterruptedException e) {
        // finished in time
      }
    });
    watchdog.setDaemon(true);
    watchdog.start();
    long start = System.nanoTime();
    switch (name) {
      case "types": types(); break;
      case "transactions": transactions(); break;
      case "session_params": sessionParams(); break;
      case "options_after_startup_parameters": optionsAfterStartupParameters(); break;
      case "copy": copy(); break;
      case "cancel": cancel(); break;
      case "errors": errors(); break;
      case "auth": auth(); break;
      case "session_mode": sessionMode(); break;
      case "default_prepare_in_transaction_mode": defaultPrepareInTransactionMode(); break;
      case "prepared_isolation": preparedIsolation(); break;
      default:
        log("unknown scenario " + name);
        System.exit(2);
    }
    log(String.format("PASS %s (%.2fs)", name, (System.nanoTime() - start) / 1e9));
    System.exit(0);
  }
}
