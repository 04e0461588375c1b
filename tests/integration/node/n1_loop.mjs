// n1_loop.mjs: the hand-written N+1 with the Node.js `mongodb` driver: list the books, then
// look up each book's author one findOne at a time ("loop"), or load all the authors with one
// {_id: {$in: [...]}} query ("in"). Prints what it read as one JSON document.
//   node n1_loop.mjs <mongodb-uri> <db> loop|in
import { MongoClient } from "mongodb";

const [uri, dbName, mode] = process.argv.slice(2);
if (!uri || !dbName || (mode !== "loop" && mode !== "in")) {
  console.error("usage: node n1_loop.mjs <mongodb-uri> <db> loop|in");
  process.exit(2);
}

const client = new MongoClient(uri, { appName: "mongotap-n1-node", maxPoolSize: 1 });
try {
  await client.connect();
  const db = client.db(dbName);
  const books = await db.collection("books").find({}).toArray();
  const names = [];
  if (mode === "loop") {
    for (const book of books) {
      const author = await db.collection("authors").findOne({ _id: book.authorId });
      names.push(author ? author.name : null);
    }
  } else {
    const ids = [...new Set(books.map((b) => b.authorId))];
    const authors = await db.collection("authors").find({ _id: { $in: ids } }).toArray();
    const byId = new Map(authors.map((a) => [a._id, a.name]));
    for (const book of books) names.push(byId.has(book.authorId) ? byId.get(book.authorId) : null);
  }
  console.log(JSON.stringify({ books: books.length, names }));
} catch (err) {
  console.error("n1_loop.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await client.close();
}
