package dev.peft4j.util;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;

import javax.xml.parsers.DocumentBuilderFactory;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class ReportingTest {
    @TempDir Path dir;

    @Test
    void niceTicks() {
        assertArrayEquals(new double[]{0, 200, 400, 600, 800, 1000}, LossCurveSvg.ticks(0, 1000, 8));
        double[] t = LossCurveSvg.ticks(1.13, 2.87, 6);            // raw step 0.29 -> 0.5
        assertArrayEquals(new double[]{1.0, 1.5, 2.0, 2.5, 3.0}, t, 1e-12);
        assertEquals("1.5", LossCurveSvg.label(1.5, 0.5));
        assertEquals("0.05", LossCurveSvg.label(0.05, 0.05));
        assertEquals("1,200", LossCurveSvg.label(1200, 200));
    }

    @Test
    void lossCurveIsWellFormedSvgWithLegendAndTitle() throws Exception {
        Path m = dir.resolve("metrics.jsonl");
        try (MetricsWriter w = new MetricsWriter(m)) {
            for (int s = 1; s <= 200; s++) {
                w.write("step", s, "loss", 3.0 * Math.exp(-s / 60.0) + 0.9 + 0.15 * Math.sin(s * 1.7), "lr", 1e-4);
                if (s % 25 == 0) w.write("step", s, "val_loss", 3.0 * Math.exp(-s / 70.0) + 1.05);
            }
        }
        Path svg = dir.resolve("loss.svg");
        LossCurveSvg.writeFromMetrics(m, svg, "gemma-3-270m LoRA on dolly <mini> & more");
        String s = Files.readString(svg);
        Document doc = DocumentBuilderFactory.newInstance().newDocumentBuilder()
                .parse(new ByteArrayInputStream(s.getBytes(StandardCharsets.UTF_8)));
        assertEquals("svg", doc.getDocumentElement().getTagName());
        assertTrue(s.contains("gemma-3-270m LoRA on dolly &lt;mini&gt; &amp; more"));
        for (String label : List.of("train (raw)", "train (smoothed)", "validation", ">step<", ">loss<")) assertTrue(s.contains(label), label);
        assertEquals(8, doc.getElementsByTagName("circle").getLength() - 1); // 8 validation dots + 1 in the legend
        Path copy = Path.of(System.getProperty("peft4j.svgOut", "target/loss-curve-example.svg"));
        Files.createDirectories(copy.toAbsolutePath().getParent());
        Files.writeString(copy, s);                                           // for looking at it
    }

    @Test
    void emptyAndSinglePointCurvesStillRender() {
        String empty = LossCurveSvg.fromMetrics(List.of(), "t");
        assertTrue(empty.contains("no data yet"));
        String one = LossCurveSvg.render("t", "step", "loss", List.of(new LossCurveSvg.Series("train", new double[]{1}, new double[]{2}, "#000", true)));
        assertFalse(one.contains("NaN"));
    }

    @Test
    void smoothingIsABiasCorrectedMovingAverage() {
        double[] s = LossCurveSvg.smooth(new double[]{4, 2}, 0.5);
        assertEquals(4.0, s[0], 1e-12);
        // (0.5*0.5*4 + 0.5*2) / (0.5*0.5 + 0.5) = 2 / 0.75
        assertEquals(2 / 0.75, s[1], 1e-12);
    }

    @Test
    void summaryAlignsValues() {
        String s = new RunSummary("Training finished").add("steps", Fmt.count(3000)).add("train loss", "2.1034 -> 1.2345")
                .add("time", Fmt.duration(3725)).render();
        assertEquals("Training finished\n  steps       3,000\n  train loss  2.1034 -> 1.2345\n  time        1:02:05\n", s);
    }

    @Test
    void formats() {
        assertEquals("01:15", Fmt.duration(75));
        assertEquals("--:--", Fmt.duration(Double.NaN));
        assertEquals("12.3k", Fmt.rate(12345));
        assertEquals("1.23k", Fmt.rate(1234));
        assertEquals("950", Fmt.rate(950));
        assertEquals("2.50M", Fmt.rate(2.5e6));
        assertEquals("2.00e-04", Fmt.lr(2e-4));
    }
}
