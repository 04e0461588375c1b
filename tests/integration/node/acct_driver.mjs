// acct_driver.mjs: one insert and two finds with the Node.js `mongodb` driver, then it stays
// connected until stdin closes, so the caller can look at mongotap's live connection list while
// the driver's connections are open. Prints one JSON line ({"ready": true, ...}) once the
// operations are done.
//   node acct_driver.mjs <mongodb-uri> <db>
import { MongoClient } from "mongodb";

const [uri, dbName] = process.argv.slice(2);
if (!uri || !dbName) {
  console.error("usage: node acct_driver.mjs <mongodb-uri> <db>");
  process.exit(2);
}

const client = new MongoClient(uri, { appName: "acct-node", maxPoolSize: 1 });
const out = { ready: true };

function stdinClosed() {
  return new Promise((resolve) => {
    process.stdin.on("data", () => {});
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
}

try {
  await client.connect();
  const col = client.db(dbName).collection("gadgets");
  out.inserted = (await col.insertOne({ _id: 1, name: "lamp", price: 12 })).insertedId;
  out.byId = (await col.find({ _id: 1 }).toArray()).length;
  out.cheap = (await col.find({ price: { $lt: 20 } }).toArray()).length;
  console.log(JSON.stringify(out));
  await stdinClosed();
} catch (err) {
  console.error("acct_driver.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await client.close();
}
