// crud.mjs: a fixed run of CRUD, cursor and aggregate operations with the Node.js `mongodb`
// driver; prints the results as one JSON document so that a run through mongotap can be compared
// with a run straight against the server.
//   node crud.mjs <mongodb-uri> <db>
import { MongoClient } from "mongodb";

const [uri, dbName] = process.argv.slice(2);
if (!uri || !dbName) {
  console.error("usage: node crud.mjs <mongodb-uri> <db>");
  process.exit(2);
}

const client = new MongoClient(uri, {
  appName: "mongotap-node-crud",
  maxPoolSize: 2,
  monitorCommands: true,
});
const out = {};
let commands = {};
client.on("commandStarted", (e) => {
  commands[e.commandName] = (commands[e.commandName] || 0) + 1;
});

try {
  await client.connect();
  const db = client.db(dbName);
  const col = db.collection("items");

  out.ping = (await db.command({ ping: 1 })).ok;
  out.insertOne = (await col.insertOne({ _id: 0, kind: "first", n: 0, tags: ["a"] })).insertedId;
  const many = [];
  for (let i = 1; i <= 300; i++) {
    many.push({ _id: i, kind: i % 3 === 0 ? "fizz" : "plain", n: i, tags: ["t" + (i % 7)] });
  }
  out.insertMany = (await col.insertMany(many)).insertedCount;
  out.findOne = await col.findOne({ _id: 42 });
  out.countFizz = await col.countDocuments({ kind: "fizz" });
  out.updateOne = (await col.updateOne({ _id: 1 }, { $set: { kind: "updated" } })).modifiedCount;
  out.updateMany = (await col.updateMany({ n: { $gt: 290 } }, { $inc: { n: 1000 } })).modifiedCount;
  out.deleteOne = (await col.deleteOne({ _id: 2 })).deletedCount;
  out.deleteMany = (await col.deleteMany({ n: { $lt: 10 }, kind: "plain" })).deletedCount;

  // a cursor that needs many getMore round trips
  commands = {};
  const cursor = col.find({}, { batchSize: 7 }).sort({ _id: 1 });
  out.cursor = [];
  for await (const doc of cursor) out.cursor.push([doc._id, doc.kind, doc.n]);
  out.getMoreUsed = (commands.getMore || 0) >= 40;

  out.aggregate = await col
    .aggregate([
      { $match: { n: { $gte: 5 } } },
      { $group: { _id: "$kind", count: { $sum: 1 }, total: { $sum: "$n" } } },
      { $sort: { _id: 1 } },
    ])
    .toArray();
  out.count = await col.countDocuments({});
  console.log(JSON.stringify(out));
} catch (err) {
  console.error("crud.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await client.close();
}
