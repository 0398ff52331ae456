// node-postgres against Weft: LISTEN, then 'notification' events for NOTIFY and a live query;
// array columns written from JS arrays and read back as JS arrays.
// Run by tests/it/clients.rs as `node notify_pg.js <port>`; prints OK and exits 0, or exits 1.
const { Client } = require('pg');

const DEADLINE_MS = 30000;

function nextNotification(client, channel) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no notification on ${channel} within ${DEADLINE_MS} ms`)), DEADLINE_MS);
    client.once('notification', (n) => {
      clearTimeout(timer);
      if (n.channel !== channel) reject(new Error(`unexpected notification ${JSON.stringify(n)}`));
      else resolve(n);
    });
  });
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function main() {
  const config = { host: '127.0.0.1', port: Number(process.argv[2]), user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10000 };
  const listener = new Client(config);
  const writer = new Client(config);
  await listener.connect();
  await writer.connect();
  try {
    await listener.query('LISTEN events');
    let got = nextNotification(listener, 'events');
    await writer.query("NOTIFY events, 'hello from node'");
    check((await got).payload === 'hello from node', 'NOTIFY payload');

    await writer.query('CREATE TABLE orders (id int PRIMARY KEY, customer text, status text)');
    await writer.query("CREATE LIVE QUERY open_orders AS SELECT customer FROM orders WHERE status = 'open'");
    await listener.query('LISTEN open_orders');
    got = nextNotification(listener, 'open_orders');
    await writer.query("INSERT INTO orders VALUES (1, 'ada', 'open')");
    const change = JSON.parse((await got).payload);
    check(change.op === 'insert' && change.key.id === 1 && change.row.customer === 'ada', JSON.stringify(change));

    await writer.query('CREATE TABLE shelves (id int PRIMARY KEY, tags text[], counts int[])');
    await writer.query('INSERT INTO shelves VALUES ($1, $2, $3)', [1, ['a', 'b c', null], [1, 2]]);
    const shelf = (await writer.query('SELECT tags, counts FROM shelves WHERE $1 = ANY(tags)', ['b c'])).rows[0];
    check(JSON.stringify(shelf) === JSON.stringify({ tags: ['a', 'b c', null], counts: [1, 2] }), JSON.stringify(shelf));
  } finally {
    await listener.end();
    await writer.end();
  }
  console.log('OK');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
