// ci_mongoose_test.mjs: a Node test script for `mongotap run`. Reads $MONGODB_URI, lists the books
// with their authors through mongoose and asserts every author was found.
//   node ci_mongoose_test.mjs perdoc   populate() per document: one lookup per book (N+1)
//   node ci_mongoose_test.mjs query    populate() on the query: one $in for all books
//   node ci_mongoose_test.mjs wait     connects, prints "ready <pid>" and waits for a signal
import mongoose from "mongoose";

const mode = process.argv[2];
const uri = process.env.MONGODB_URI;
if (!uri || !["perdoc", "query", "wait"].includes(mode)) {
  console.error("usage: MONGODB_URI=... node ci_mongoose_test.mjs perdoc|query|wait");
  process.exit(2);
}

// The test server has no `create`, and indexes are not what this run is about.
mongoose.set("autoCreate", false);
mongoose.set("autoIndex", false);

const Author = mongoose.model(
  "Author",
  new mongoose.Schema({ _id: Number, name: String }, { collection: "authors" }),
);
const Book = mongoose.model(
  "Book",
  new mongoose.Schema(
    { _id: Number, title: String, authorId: { type: Number, ref: "Author" } },
    { collection: "books" },
  ),
);

await mongoose.connect(uri, { appName: "ci-mongoose", maxPoolSize: 1 });
if (mode === "wait") {
  await Book.findOne({});
  console.log("ready " + process.pid);
  setInterval(() => {}, 60000);
} else {
  let books;
  if (mode === "perdoc") {
    books = await Book.find({}).sort({ _id: 1 });
    for (const book of books) await book.populate("authorId");
  } else {
    books = await Book.find({}).sort({ _id: 1 }).populate("authorId");
  }
  const missing = books.filter((b) => !b.authorId || !b.authorId.name);
  if (books.length === 0 || missing.length > 0) {
    console.error(`ci_mongoose_test: ${missing.length} of ${books.length} books lack an author`);
    process.exitCode = 1;
  }
  await mongoose.disconnect();
}
