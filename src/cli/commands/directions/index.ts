/** `steerkit directions <subcommand>`: residual directions from a shell. Each subcommand is its own module; this one only lists them. */
import { subcommands } from "../../args.ts";
import { directionsExportCommand } from "./export.ts";
import { directionsExtractCommand } from "./extract.ts";
import { directionsInfoCommand } from "./info.ts";
import { directionsSelectCommand } from "./select.ts";

export const directionsCommand = subcommands(
  "directions",
  "extract, describe and convert residual directions",
  "directions: extract (difference of means, PCA), describe, export as llama.cpp control vectors",
  { extract: directionsExtractCommand, export: directionsExportCommand, info: directionsInfoCommand, select: directionsSelectCommand },
);
