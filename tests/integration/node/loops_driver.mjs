// loops_driver.mjs: the loops of SPEC section 5a with the Node.js `mongodb` driver, one per mode:
//   count   list the books, then countDocuments() of each book's reviews (one aggregate each)
//   update  list the books, then updateOne() each book by _id
//   bulk    list the books, then one bulkWrite() of an updateOne per book (a batch)
//   repeat  findOne() the same author <repeat> times (default 6)
// Prints what it did as one JSON document.
//   node loops_driver.mjs <mongodb-uri> <db> count|update|bulk|repeat [repeat]
import { MongoClient } from "mongodb";

const MODES = ["count", "update", "bulk", "repeat"];
const [uri, dbName, mode, repeatArg] = process.argv.slice(2);
if (!uri || !dbName || !MODES.includes(mode)) {
  console.error("usage: node loops_driver.mjs <mongodb-uri> <db> " + MODES.join("|") + " [repeat]");
  process.exit(2);
}

const client = new MongoClient(uri, { appName: "mongotap-loops-node", maxPoolSize: 1 });
try {
  await client.connect();
  const db = client.db(dbName);
  const out = { mode };
  if (mode === "repeat") {
    const times = Number(repeatArg || 6);
    out.found = 0;
    for (let i = 0; i < times; i++) {
      if (await db.collection("authors").findOne({ _id: 1 })) out.found++;
    }
  } else {
    const books = await db.collection("books").find({}).toArray();
    out.books = books.length;
    if (mode === "count") {
      out.reviews = 0;
      for (const book of books) {
        out.reviews += await db.collection("reviews").countDocuments({ bookId: book._id });
      }
    } else if (mode === "update") {
      out.modified = 0;
      for (const book of books) {
        const r = await db.collection("books").updateOne({ _id: book._id }, { $inc: { views: 1 } });
        out.modified += r.modifiedCount;
      }
    } else {
      const r = await db.collection("books").bulkWrite(
        books.map((b) => ({
          updateOne: { filter: { _id: b._id }, update: { $inc: { views: 1 } } },
        })),
      );
      out.modified = r.modifiedCount;
    }
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error("loops_driver.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await client.close();
}
