// n1_mongoose.mjs: the same listing with mongoose: populate() called on each document after the
// query ("perdoc", one lookup per book) or once on the query ("query", one $in for all books).
// Prints what it read as one JSON document.
//   node n1_mongoose.mjs <mongodb-uri> perdoc|query
import { Book, mongoose } from "./mongoose_models.mjs";

const [uri, mode] = process.argv.slice(2);
if (!uri || (mode !== "perdoc" && mode !== "query")) {
  console.error("usage: node n1_mongoose.mjs <mongodb-uri> perdoc|query");
  process.exit(2);
}

try {
  await mongoose.connect(uri, { appName: "mongotap-n1-mongoose", maxPoolSize: 1 });
  let books;
  if (mode === "perdoc") {
    books = await Book.find({}).sort({ _id: 1 });
    for (const book of books) await book.populate("authorId");
  } else {
    books = await Book.find({}).sort({ _id: 1 }).populate("authorId");
  }
  const names = books.map((b) => (b.authorId ? b.authorId.name : null));
  console.log(JSON.stringify({ books: books.length, names }));
} catch (err) {
  console.error("n1_mongoose.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await mongoose.disconnect();
}
