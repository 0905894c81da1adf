package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.eval.HarnessLM.LLRequest;
import dev.peft4j.util.UserException;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.schema.MessageType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

import static dev.peft4j.eval.ParquetFiles.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Parquet files as the Hub / {@code datasets} publish them give the same documents, and so the same prompts, as the
 * equivalent JSON Lines. Rows use the real schemas of each dataset (field names, types, nesting).
 */
class ParquetDatasetsTest {
    static final ObjectMapper M = new ObjectMapper();

    static JsonNode json(String s) {
        try { return M.readTree(s.replace('\'', '"')); } catch (IOException e) { throw new RuntimeException(e); }
    }

    static List<JsonNode> rows(String... s) { return Arrays.stream(s).map(ParquetDatasetsTest::json).toList(); }

    static void jsonl(Path file, List<JsonNode> rows) throws IOException {
        Files.createDirectories(file.getParent());
        StringBuilder sb = new StringBuilder();
        for (JsonNode r : rows) sb.append(M.writeValueAsString(r)).append('\n');
        Files.writeString(file, sb.toString(), StandardCharsets.UTF_8);
    }

    // ------------------------------------------------------------------ real schemas (as pyarrow writes them)

    static final MessageType ARC = schema(str("id"), str("question"),
            struct("choices", strList("text"), strList("label")), str("answerKey"));
    static final MessageType PIQA = schema(str("goal"), str("sol1"), str("sol2"), i64("label"));
    static final MessageType BOOLQ = schema(str("question"), str("passage"), i32("idx"), i64("label"));
    static final MessageType WINOGRANDE = schema(str("sentence"), str("option1"), str("option2"), str("answer"));
    static final MessageType HELLASWAG = schema(i32("ind"), str("activity_label"), str("ctx_a"), str("ctx_b"), str("ctx"),
            strList("endings"), str("source_id"), str("split"), str("split_type"), str("label"));
    static final MessageType TRIVIAQA = schema(str("question"), str("question_id"), str("question_source"),
            struct("entity_pages", strList("doc_source"), strList("filename"), strList("title"), strList("wiki_context")),
            struct("search_results", strList("description"), strList("filename"), list("rank", "int32 element"), strList("title"),
                    strList("url"), strList("search_context")),
            struct("answer", strList("aliases"), strList("normalized_aliases"), str("matched_wiki_entity_name"),
                    str("normalized_matched_wiki_entity_name"), str("normalized_value"), str("type"), str("value")));
    static final MessageType MMLU = schema(str("question"), str("subject"), strList("choices"), i64("answer"));

    static final List<JsonNode> ARC_TEST = rows(
            "{'id':'Mercury_7175875','question':'An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?',"
                    + "'choices':{'text':['Planetary density will decrease.','Planetary years will become longer.','Planetary days will become shorter.','Planetary gravity will become stronger.'],'label':['A','B','C','D']},'answerKey':'C'}",
            "{'id':'NYSEDREGENTS_2015_4_8','question':'Which object is a nonliving thing?','choices':{'text':['tree','rock','fish'],'label':['1','2','3']},'answerKey':'2'}");
    static final List<JsonNode> ARC_TRAIN = rows(
            "{'id':'Mercury_SC_415702','question':'George wants to warm his hands quickly by rubbing them. Which skin surface will produce the most heat?',"
                    + "'choices':{'text':['dry palms','wet palms','palms covered with oil','palms covered with lotion'],'label':['A','B','C','D']},'answerKey':'A'}",
            "{'id':'MCAS_2004_9_8','question':'Which of these is a gas at room temperature?','choices':{'text':['iron','oxygen','water'],'label':['A','B','C']},'answerKey':'B'}");
    static final List<JsonNode> PIQA_VAL = rows(
            "{'goal':'How do I ready a guinea pig cage for it\\u2019s new occupants?','sol1':'Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips.','sol2':'Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material.','label':0}",
            "{'goal':'dresser','sol1':'replace drawer with bobby pin ','sol2':'finish, woodwork with bobby pin ','label':1}");
    static final List<JsonNode> PIQA_TRAIN = rows(
            "{'goal':'To separate egg whites from the yolk using a water bottle, you should','sol1':'Squeeze the water bottle and press it against the yolk. Release, which creates suction.','sol2':'Place the water bottle and press it against the yolk. Keep pushing.','label':0}",
            "{'goal':'Make outdoor pillow.','sol1':'Blow into tin can and tie with rubber band.','sol2':'Blow into trash bag and tie with rubber band.','label':1}");
    static final List<JsonNode> BOOLQ_VAL = rows(
            "{'question':'does ethanol take more energy make that produces','passage':'Ethanol fuel -- All biomass goes through at least some of these steps.','idx':0,'label':0}",
            "{'question':'do iran and afghanistan speak the same language','passage':'Persian language -- Persian (/\\u02c8p\\u025c\\u02d0r\\u0292\\u0259n/), also known by its endonym Farsi (\\u0641\\u0627\\u0631\\u0633\\u06cc), is one of the Western Iranian languages.','idx':1,'label':1}");
    static final List<JsonNode> BOOLQ_TRAIN = rows(
            "{'question':'is house tax and property tax are same','passage':'Property tax or house tax is a local tax on buildings, along with appurtenant land.','idx':0,'label':1}",
            "{'question':'is pain experienced in a missing body part or paralyzed area','passage':'Phantom pain sensations are described as perceptions that an individual experiences relating to a limb or an organ that is not physically part of the body.','idx':1,'label':1}");
    static final List<JsonNode> WINO_VAL = rows(
            "{'sentence':'Sarah was a much better surgeon than Maria so _ always got the harder cases.','option1':'Sarah','option2':'Maria','answer':'1'}",
            "{'sentence':'Sarah was a much better surgeon than Maria so _ always got the easier cases.','option1':'Sarah','option2':'Maria','answer':'2'}");
    static final List<JsonNode> WINO_TRAIN = rows(
            "{'sentence':'Ian volunteered to eat Dennis\\'s menudo after already having a bowl because _ despised eating intestine.','option1':'Ian','option2':'Dennis','answer':'2'}",
            "{'sentence':'He never comes to my home, but I always go to his house because the _ is smaller.','option1':'home','option2':'house','answer':'1'}");
    static final List<JsonNode> HELLASWAG_VAL = rows(
            "{'ind':24,'activity_label':'Roof shingle removal','ctx_a':'A man is sitting on a roof.','ctx_b':'he','ctx':'A man is sitting on a roof. he',"
                    + "'endings':['is using wrap to wrap a pair of skis.','is ripping level tiles off.','is holding a rubik\\'s cube.','starts pulling up roofing on a roof.'],"
                    + "'source_id':'activitynet~v_-JhWjGDPHMY','split':'val','split_type':'indomain','label':'3'}",
            "{'ind':92,'activity_label':'Clean and jerk','ctx_a':'A lady walks to a barbell. She bends down and grabs the pole.','ctx_b':'the lady',"
                    + "'ctx':'A lady walks to a barbell. She bends down and grabs the pole. the lady',"
                    + "'endings':['swings and lands in her arms.','pulls the barbell forward.','pulls a rope attached to the barbell.','stands and lifts the weight over her head.'],"
                    + "'source_id':'activitynet~v_-lJS58hyo1c','split':'val','split_type':'zeroshot','label':'3'}");
    static final List<JsonNode> HELLASWAG_TRAIN = rows(
            "{'ind':4,'activity_label':'Removing ice from car','ctx_a':'Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.','ctx_b':'then',"
                    + "'ctx':'Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. then',"
                    + "'endings':[', the man adds wax to the windshield and cuts it.',', a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.',', the man puts on a christmas coat, knitted with netting.',', the man continues removing the snow on his car.'],"
                    + "'source_id':'activitynet~v_-1IBHYS3L-Y','split':'train','split_type':'indomain','label':'3'}",
            "{'ind':8,'activity_label':'Baking cookies','ctx_a':'A female chef in white uniform shows a stack of baking pans in a large kitchen presenting them.','ctx_b':'the pans',"
                    + "'ctx':'A female chef in white uniform shows a stack of baking pans in a large kitchen presenting them. the pans',"
                    + "'endings':['contain egg yolks and baking soda.','are then sprinkled with brown sugar.','are placed in a strainer on the counter.','are filled with pastries and loaded into the oven.'],"
                    + "'source_id':'activitynet~v_-2dxp-mv2zo','split':'train','split_type':'indomain','label':'3'}");
    static final String EMPTY_PAGES = "'entity_pages':{'doc_source':[],'filename':[],'title':[],'wiki_context':[]},"
            + "'search_results':{'description':[],'filename':[],'rank':[],'title':[],'url':[],'search_context':[]}";
    static final List<JsonNode> TRIVIA_VAL = rows(
            "{'question':'Which Lloyd Webber musical premiered in the US on 10th December 1993?','question_id':'tc_33','question_source':'http://www.triviacountry.com/',"
                    + EMPTY_PAGES + ",'answer':{'aliases':['Sunset Blvd','West Sunset Boulevard','Sunset Boulevard','Sunset Bulevard','Sunset Blvd.'],"
                    + "'normalized_aliases':['sunset boulevard','sunset bulevard','west sunset boulevard','sunset blvd'],'matched_wiki_entity_name':'',"
                    + "'normalized_matched_wiki_entity_name':'','normalized_value':'sunset boulevard','type':'WikipediaEntity','value':'Sunset Boulevard'}}",
            "{'question':'Who was the man behind The Chipmunks?','question_id':'tc_40','question_source':'http://www.triviacountry.com/',"
                    + "'entity_pages':{'doc_source':['TagMe'],'filename':['The_Chipmunks.txt'],'title':['The Chipmunks'],'wiki_context':['Alvin and the Chipmunks...']},"
                    + "'search_results':{'description':['The Chipmunks were created by Ross Bagdasarian'],'filename':['4/4_1.txt'],'rank':[0],'title':['Chipmunks'],'url':['http://example.org/'],'search_context':['...']},"
                    + "'answer':{'aliases':['David Seville'],'normalized_aliases':['david seville'],'matched_wiki_entity_name':'','normalized_matched_wiki_entity_name':'',"
                    + "'normalized_value':'david seville','type':'FreeForm','value':'David Seville'}}");
    static final List<JsonNode> TRIVIA_TRAIN = rows(
            "{'question':'Where in England was Dame Judi Dench born?','question_id':'tc_3','question_source':'http://www.triviacountry.com/',"
                    + EMPTY_PAGES + ",'answer':{'aliases':['York, UK','York','Eoforwic'],'normalized_aliases':['york','york uk','eoforwic'],"
                    + "'matched_wiki_entity_name':'','normalized_matched_wiki_entity_name':'','normalized_value':'york','type':'WikipediaEntity','value':'York'}}",
            "{'question':'In which decade did Billboard magazine first publish and American hit chart?','question_id':'tc_1','question_source':'http://www.triviacountry.com/',"
                    + EMPTY_PAGES + ",'answer':{'aliases':['30s','1930s'],'normalized_aliases':['30s','1930s'],"
                    + "'matched_wiki_entity_name':'','normalized_matched_wiki_entity_name':'','normalized_value':'30s','type':'Numerical','value':'30s'}}");

    /** One task's data: where the JSONL and the Parquet files go, relative to their data dirs. */
    record Case(String task, MessageType schema, List<JsonNode> eval, String jsonlEval, String parquetEval,
                List<JsonNode> train, String jsonlTrain, List<String> parquetTrain) {}

    static final List<Case> CASES = List.of(
            new Case("arc_easy", ARC, ARC_TEST, "arc_easy/test.jsonl", "ai2_arc/ARC-Easy/test-00000-of-00001.parquet",
                    ARC_TRAIN, "arc_easy/train.jsonl", List.of("ai2_arc/ARC-Easy/train-00000-of-00001.parquet")),
            new Case("hellaswag", HELLASWAG, HELLASWAG_VAL, "hellaswag/validation.jsonl", "hellaswag/validation-00000-of-00001.parquet",
                    HELLASWAG_TRAIN, "hellaswag/hellaswag-train.jsonl", List.of("hellaswag/train.parquet")),
            new Case("piqa", PIQA, PIQA_VAL, "piqa/validation.jsonl", "piqa/data/validation-00000-of-00001.parquet",
                    PIQA_TRAIN, "piqa/train.jsonl", List.of("piqa/data/train-00000-of-00001.parquet")),
            new Case("boolq", BOOLQ, BOOLQ_VAL, "boolq/validation.jsonl", "super_glue/boolq/validation-00000-of-00001.parquet",
                    BOOLQ_TRAIN, "boolq/train.jsonl", List.of("super_glue/boolq/train/0000.parquet")),
            new Case("winogrande", WINOGRANDE, WINO_VAL, "winogrande/validation.jsonl", "winogrande/winogrande_xl/validation-00000-of-00001.parquet",
                    WINO_TRAIN, "winogrande/train.jsonl", List.of("winogrande/winogrande_xl/train/0000.parquet")),
            new Case("triviaqa", TRIVIAQA, TRIVIA_VAL, "triviaqa/validation.jsonl", "trivia_qa/rc.nocontext/validation-00000-of-00001.parquet",
                    TRIVIA_TRAIN, "triviaqa/train.jsonl", List.of("trivia_qa/rc.nocontext/train-00000-of-00002.parquet",
                            "trivia_qa/rc.nocontext/train-00001-of-00002.parquet")));

    static List<JsonNode> docs(Path dir, Task t, String split) {
        return Datasets.load(dir, t, split).stream().map(Datasets.Doc::json).toList();
    }

    /** 1-shot prompts (context + continuations, or the generation prompt) of every document, drawn as lm-eval does. */
    static List<String> prompts(Task t, List<JsonNode> docs, List<JsonNode> pool) {
        PyRandom rnd = new PyRandom(Evaluator.FEWSHOT_SEED);
        List<String> out = new ArrayList<>();
        for (JsonNode d : docs) {
            String prefix = Evaluator.fewshotPrefix(t, Evaluator.fewshotExamples(t, pool, d, 1, rnd));
            if (t.outputType() == Task.OutputType.GENERATE_UNTIL) {
                out.add(prefix + t.docToText().apply(d) + " -> " + t.docToTarget().apply(d));
            } else {
                for (LLRequest r : Evaluator.requests(t, prefix, d)) out.add(r.context() + "|" + r.continuation());
                out.add("gold " + Evaluator.gold(t, d));
            }
        }
        return out;
    }

    @Test
    void hubParquetLayoutsGiveTheSameDocsAndPromptsAsJsonl(@TempDir Path tmp) throws IOException {
        Path jl = tmp.resolve("jsonl"), pq = tmp.resolve("parquet");
        for (Case c : CASES) {
            jsonl(jl.resolve(c.jsonlEval()), c.eval());
            jsonl(jl.resolve(c.jsonlTrain()), c.train());
            write(pq.resolve(c.parquetEval()), c.schema(), c.eval());
            int shards = c.parquetTrain().size();
            for (int s = 0; s < shards; s++) {
                int from = s * c.train().size() / shards, to = (s + 1) * c.train().size() / shards;
                write(pq.resolve(c.parquetTrain().get(s)), c.schema(), c.train().subList(from, to));
            }
        }
        for (Case c : CASES) {
            Task t = Tasks.task(c.task());
            List<JsonNode> evalJ = docs(jl, t, t.evalSplit()), evalP = docs(pq, t, t.evalSplit());
            List<JsonNode> trainJ = docs(jl, t, t.fewshotSplit()), trainP = docs(pq, t, t.fewshotSplit());
            assertEquals(c.eval().size(), evalP.size(), c.task());
            assertEquals(evalJ, evalP, c.task() + " " + t.evalSplit());
            assertEquals(trainJ, trainP, c.task() + " " + t.fewshotSplit());
            assertEquals(prompts(t, evalJ, trainJ), prompts(t, evalP, trainP), c.task() + " prompts");
        }
        // hand-checked anchors (the rows above, read back from Parquet)
        Task arc = Tasks.task("arc_easy");
        JsonNode a = docs(pq, arc, "test").get(0);
        List<LLRequest> r = Evaluator.requests(arc, "", a);
        assertEquals("Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:",
                r.get(0).context());
        assertEquals(" Planetary days will become shorter.", r.get(2).continuation());
        assertEquals(2, Evaluator.gold(arc, a)); // answerKey C
        assertEquals(1, Evaluator.gold(arc, docs(pq, arc, "test").get(1))); // answerKey '2' of labels 1,2,3
        Task hs = Tasks.task("hellaswag");
        assertEquals("Roof shingle removal: A man is sitting on a roof. He", Evaluator.requests(hs, "", docs(pq, hs, "validation").get(0)).get(0).context());
        Task tq = Tasks.task("triviaqa");
        List<JsonNode> tqDocs = docs(pq, tq, "validation");
        assertEquals(List.of("Sunset Blvd", "West Sunset Boulevard", "Sunset Boulevard", "Sunset Bulevard", "Sunset Blvd."), tq.docToTarget().apply(tqDocs.get(0)));
        assertEquals(0, tqDocs.get(1).path("search_results").path("rank").get(0).intValue());
        assertTrue(tqDocs.get(0).path("entity_pages").path("title").isArray());
        assertEquals(0, tqDocs.get(0).path("entity_pages").path("title").size());
        Task bq = Tasks.task("boolq");
        assertTrue(bq.docToText().apply(docs(pq, bq, "validation").get(1)).toString().contains("Farsi (\u0641\u0627\u0631\u0633\u06cc)"));
        Task wg = Tasks.task("winogrande");
        JsonNode w = docs(pq, wg, "train").get(0);
        assertEquals(1, wg.docToText().apply(w)); // answer '2'
        assertEquals("despised eating intestine.", wg.docToTarget().apply(w));
        // sharded train split: both shards, in order
        assertEquals(TRIVIA_TRAIN, trainOf(pq, tq));
    }

    static List<JsonNode> trainOf(Path dir, Task t) { return docs(dir, t, "train"); }

    @Test
    void jsonlStillWinsAndMissingDataListsParquetCandidates(@TempDir Path tmp) throws IOException {
        Task t = Tasks.task("piqa");
        UserException e = assertThrows(UserException.class, () -> Datasets.load(tmp, t, "validation"));
        assertTrue(e.getMessage().contains(tmp.resolve("piqa/validation-*.parquet").toString()), e.getMessage());
        assertTrue(e.getMessage().contains(tmp.resolve("piqa/data/validation-*.parquet").toString()), e.getMessage());
        write(tmp.resolve("piqa/validation.parquet"), PIQA, PIQA_VAL.subList(0, 1));
        jsonl(tmp.resolve("piqa/validation.jsonl"), PIQA_VAL);
        assertEquals(2, Datasets.load(tmp, t, "validation").size());
    }

    @Test
    void mmluParquetAsCaisMmluGivesTheCsvDocs(@TempDir Path tmp) throws IOException {
        Task t = Tasks.task("mmlu_abstract_algebra");
        Path csv = tmp.resolve("csv"), pq = tmp.resolve("parquet");
        Files.createDirectories(csv.resolve("mmlu/test"));
        Files.writeString(csv.resolve("mmlu/test/abstract_algebra_test.csv"),
                "Find the degree for the given field extension Q(sqrt(2)) over Q.,0,4,2,6,C\n\"Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.\",8,2,24,120,C\n");
        write(pq.resolve("mmlu/abstract_algebra/test-00000-of-00001.parquet"), MMLU, rows(
                "{'question':'Find the degree for the given field extension Q(sqrt(2)) over Q.','subject':'abstract_algebra','choices':['0','4','2','6'],'answer':2}",
                "{'question':'Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.','subject':'abstract_algebra','choices':['8','2','24','120'],'answer':2}"));
        assertEquals(docs(csv, t, "test"), docs(pq, t, "test"));
    }

    @Test
    void everyCodecPageVersionRowGroupingAndListFormReadsTheSame(@TempDir Path tmp) throws IOException {
        Task t = Tasks.task("hellaswag");
        List<JsonNode> many = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            for (JsonNode r : HELLASWAG_VAL) {
                var o = r.deepCopy();
                ((com.fasterxml.jackson.databind.node.ObjectNode) o).put("ind", i * 100 + r.get("ind").asInt());
                many.add(o);
            }
        }
        jsonl(tmp.resolve("j/hellaswag/validation.jsonl"), many);
        List<JsonNode> expected = docs(tmp.resolve("j"), t, "validation");
        int k = 0;
        for (CompressionCodecName codec : List.of(CompressionCodecName.UNCOMPRESSED, CompressionCodecName.SNAPPY, CompressionCodecName.GZIP,
                CompressionCodecName.ZSTD, CompressionCodecName.LZ4_RAW)) {
            for (boolean v2 : List.of(false, true)) {
                Path dir = tmp.resolve("p" + k++);
                write(dir.resolve("hellaswag/validation.parquet"), HELLASWAG, many, codec, 3, v2);
                assertEquals(expected, docs(dir, t, "validation"), codec + (v2 ? " v2" : " v1"));
            }
        }
        // legacy 2-level lists: 'repeated binary array' (parquet-avro) and a bare repeated field
        for (String endings : List.of("optional group endings (LIST) { repeated binary array (STRING); }", "repeated binary endings (STRING);")) {
            MessageType legacy = schema(i32("ind"), str("activity_label"), str("ctx_a"), str("ctx_b"), str("ctx"), endings,
                    str("source_id"), str("split"), str("split_type"), str("label"));
            Path dir = tmp.resolve("p" + k++);
            write(dir.resolve("hellaswag/validation.parquet"), legacy, many);
            assertEquals(expected, docs(dir, t, "validation"), endings);
        }
    }

    @Test
    void nullsAndNullListElementsAreJsonNulls(@TempDir Path tmp) throws IOException {
        Path f = write(tmp.resolve("x.parquet"), schema(str("a"), strList("b"), i64("n"), "optional double d;", "optional boolean z;"),
                rows("{'a':null,'b':['x',null,'y'],'n':5000000000,'d':0.25,'z':true}"));
        assertEquals(json("{'a':null,'b':['x',null,'y'],'n':5000000000,'d':0.25,'z':true}"), Parquet.read(f).get(0));
    }

    @Test
    void shardsAreReadInOrderAndAMissingShardIsReported(@TempDir Path tmp) throws IOException {
        Task t = Tasks.task("winogrande");
        List<JsonNode> all = new ArrayList<>(WINO_VAL);
        all.addAll(WINO_TRAIN);
        Path dir = tmp.resolve("winogrande");
        write(dir.resolve("validation-00002-of-00003.parquet"), WINOGRANDE, all.subList(3, 4));
        write(dir.resolve("validation-00000-of-00003.parquet"), WINOGRANDE, all.subList(0, 2));
        write(dir.resolve("validation-00001-of-00003.parquet"), WINOGRANDE, all.subList(2, 3));
        List<Datasets.Doc> d = Datasets.load(tmp, t, "validation");
        assertEquals(all, d.stream().map(Datasets.Doc::json).toList());
        assertEquals(dir.resolve("validation-00001-of-00003.parquet") + " row 1", d.get(2).source());
        Files.delete(dir.resolve("validation-00001-of-00003.parquet"));
        UserException e = assertThrows(UserException.class, () -> Datasets.load(tmp, t, "validation"));
        assertEquals(dir + ": missing shard 1 of 3 (found 2 files matching validation-*.parquet)", e.getMessage());
    }

    @Test
    void badParquetIsAOneLineErrorNamingTheFile(@TempDir Path tmp) throws IOException {
        Task t = Tasks.task("arc_easy");
        Path good = write(tmp.resolve("good.parquet"), ARC, ARC_TEST);
        byte[] bytes = Files.readAllBytes(good);
        Path f = tmp.resolve("arc_easy/test.parquet");
        Files.createDirectories(f.getParent());
        List<byte[]> bad = List.of(
                "question,choices\nnot parquet at all\n".getBytes(StandardCharsets.UTF_8),
                Arrays.copyOf(bytes, bytes.length / 2),                                // truncated download
                Arrays.copyOfRange(bytes, 0, 0),                                       // empty
                corruptFooter(bytes));
        for (byte[] b : bad) {
            Files.write(f, b);
            UserException e = assertThrows(UserException.class, () -> Datasets.load(tmp, t, "test"));
            assertTrue(e.getMessage().startsWith(f + ": not a readable Parquet file ("), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
        // a codec the reader does not have
        write(f, ARC, ARC_TEST, CompressionCodecName.BROTLI, 0, false);
        UserException e = assertThrows(UserException.class, () -> Datasets.load(tmp, t, "test"));
        assertTrue(e.getMessage().startsWith(f + ": not a readable Parquet file (") && e.getMessage().contains("BROTLI are not supported"), e.getMessage());
        // a row without a required field names the file and row
        write(f, ARC, rows("{'id':'x','question':'q','choices':{'text':['a'],'label':['A']}}"));
        e = assertThrows(UserException.class, () -> Datasets.load(tmp, t, "test"));
        assertEquals(f + " row 1: malformed arc_easy row: missing field 'answerKey'", e.getMessage());
    }

    /** The footer's Thrift bytes overwritten (its length and the PAR1 magic kept). */
    static byte[] corruptFooter(byte[] b) {
        byte[] c = b.clone();
        int len = (c[c.length - 8] & 0xff) | (c[c.length - 7] & 0xff) << 8 | (c[c.length - 6] & 0xff) << 16 | (c[c.length - 5] & 0xff) << 24;
        for (int i = c.length - 8 - len; i < c.length - 8; i++) c[i] = (byte) 0xee;
        return c;
    }

    @Test
    void sharedHellaswagDumpAsShardedParquet(@TempDir Path tmp) throws IOException {
        Path src = Shared.require("data/hellaswag/hellaswag-val.jsonl");
        List<JsonNode> all = Files.readAllLines(src).stream().filter(l -> !l.isBlank()).map(l -> {
            try { return M.readTree(l); } catch (IOException e) { throw new RuntimeException(e); }
        }).toList();
        MessageType dump = schema(i64("ind"), str("activity_label"), str("ctx_a"), str("ctx_b"), str("ctx"), strList("endings"), i64("label"), str("split"));
        assertEquals(all.get(0).properties().stream().map(java.util.Map.Entry::getKey).collect(Collectors.toSet()),
                dump.getFields().stream().map(org.apache.parquet.schema.Type::getName).collect(Collectors.toSet()));
        int n = all.size(), shards = 3;
        for (int s = 0; s < shards; s++) {
            write(tmp.resolve("p/hellaswag/validation-0000" + s + "-of-0000" + shards + ".parquet"), dump,
                    all.subList(s * n / shards, (s + 1) * n / shards), CompressionCodecName.SNAPPY, 1000, false);
        }
        Files.createDirectories(tmp.resolve("j/hellaswag"));
        Files.copy(src, tmp.resolve("j/hellaswag/hellaswag-val.jsonl"));
        Task t = Tasks.task("hellaswag");
        List<JsonNode> p = docs(tmp.resolve("p"), t, "validation");
        assertEquals(10042, p.size());
        assertEquals(docs(tmp.resolve("j"), t, "validation"), p);
    }
}
