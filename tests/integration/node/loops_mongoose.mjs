// loops_mongoose.mjs: the loops of SPEC section 5a with mongoose, one per mode:
//   save    list the books as documents, change each and save() it (one updateOne per book)
//   update  list the books, then Book.updateOne() each by _id
//   bulk    list the books, then one Book.bulkWrite() of an updateOne per book (a batch)
//   count   list the books, then Review.countDocuments() per book
//   repeat  Author.findById() the same author 6 times
// Prints what it did as one JSON document.
//   node loops_mongoose.mjs <mongodb-uri> save|update|bulk|count|repeat
import { Author, Book, Review, mongoose } from "./mongoose_models.mjs";

const MODES = ["save", "update", "bulk", "count", "repeat"];
const [uri, mode] = process.argv.slice(2);
if (!uri || !MODES.includes(mode)) {
  console.error("usage: node loops_mongoose.mjs <mongodb-uri> " + MODES.join("|"));
  process.exit(2);
}

try {
  await mongoose.connect(uri, { appName: "mongotap-loops-mongoose", maxPoolSize: 1 });
  const out = { mode };
  if (mode === "repeat") {
    out.found = 0;
    for (let i = 0; i < 6; i++) if (await Author.findById(1)) out.found++;
  } else {
    const books = await Book.find({}).sort({ _id: 1 });
    out.books = books.length;
    if (mode === "save") {
      for (const book of books) {
        book.views = (book.views || 0) + 1;
        await book.save();
      }
    } else if (mode === "update") {
      out.modified = 0;
      for (const book of books) {
        const r = await Book.updateOne({ _id: book._id }, { $inc: { views: 1 } });
        out.modified += r.modifiedCount;
      }
    } else if (mode === "bulk") {
      const r = await Book.bulkWrite(
        books.map((b) => ({
          updateOne: { filter: { _id: b._id }, update: { $inc: { views: 1 } } },
        })),
      );
      out.modified = r.modifiedCount;
    } else {
      out.reviews = 0;
      for (const book of books) out.reviews += await Review.countDocuments({ bookId: book._id });
    }
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error("loops_mongoose.mjs failed: " + (err && err.stack ? err.stack : err));
  process.exitCode = 1;
} finally {
  await mongoose.disconnect();
}
