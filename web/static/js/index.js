// Landing page: links to the two pages, in the visitor's language.
import { startPage } from "./common.js";

startPage();
