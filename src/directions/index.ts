/**
 * `steerkit/directions`: extract residual directions from two prompt sets, save them as direction
 * files, and read and write llama.cpp / repeng control vectors. The `direction` artifact kind
 * (`directionArtifact`) loads every one of these formats by extension.
 */
export { directionArtifact, MAX_DIRECTION_FILE_BYTES, type Direction } from "./artifact.ts";
export { extractDirections, extractPerPosition, extractionDirection, isExtractPositions, saveExtraction, EXTRACT_METHODS, EXTRACT_POSITIONS } from "./extract.ts";
export type { ExtractMethod, ExtractOptions, ExtractPositions, Extraction, PointSummary, PositionedExtraction, TokenFromEnd } from "./extract.ts";
export { readDirectionFile, writeDirectionFile, DIRECTION_FORMAT, type DirectionFileContents } from "./file.ts";
export { readControlVector, sumControlVectors, controlVectorPoints, encodeControlVector, writeControlVector, CONTROL_VECTOR_ARCH, type ControlVector } from "./control-vector.ts";
export { readPromptSet, hashPromptSet, preparePrompt, type PromptFormat, type PreparedPrompt } from "./prompts.ts";
export { differenceOfMeans, pcaOfDifferences, separation, cosine, type PcaResult, type Separation } from "./math.ts";
export { abliterate, chooseDirection, ABLITERATE_TYPES, ABLITERATE_ARCHITECTURES, type AbliterateOptions, type AbliterateReport, type AbliterateType, type EditedTensor } from "./abliterate.ts";
export { selectDirections, selectionMarkdown, selectRunCount, logProbMass, klDivergence, SelectionError, type SelectOptions, type SelectRow, type SelectScore, type JudgedGeneration, type Selection, type SelectionJudging } from "./select.ts";
export { selectionJudge, type SelectJudge, type SelectJudgeConfig, type SelectionJudge } from "./select-judge.ts";
