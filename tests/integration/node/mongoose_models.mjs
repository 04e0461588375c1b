// mongoose_models.mjs: the models the mongoose scripts share (integer ids, as the tests seed
// them), with what the test server needs: no `create` (autoCreate off) and no index builds.
import mongoose from "mongoose";

mongoose.set("autoCreate", false);
mongoose.set("autoIndex", false);

export const Author = mongoose.model(
  "Author",
  new mongoose.Schema({ _id: Number, name: String }, { collection: "authors" }),
);
export const Book = mongoose.model(
  "Book",
  new mongoose.Schema(
    { _id: Number, title: String, views: Number, authorId: { type: Number, ref: "Author" } },
    { collection: "books" },
  ),
);
export const Review = mongoose.model(
  "Review",
  new mongoose.Schema({ _id: Number, bookId: Number, stars: Number }, { collection: "reviews" }),
);
export { mongoose };
