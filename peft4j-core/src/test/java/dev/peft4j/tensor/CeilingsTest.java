package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The host-gap probe reports what it defines: gaps longer than its threshold, their rate and share of the time. */
class CeilingsTest {
    @Test
    void hostGapsAreLongerThanTheThresholdAndAShareOfTheTime() {
        Ceilings.HostGaps g = Ceilings.hostGaps(0.3);
        assertTrue(g.fraction() >= 0 && g.fraction() < 1, "fraction " + g.fraction());
        assertTrue(g.perSecond() >= 0, "perSecond " + g.perSecond());
        if (g.perSecond() > 0) {
            // every counted gap exceeds the threshold, so their median does, and the time lost is at least count x threshold
            assertTrue(g.medianMicros() * 1e3 > Ceilings.GAP_NANOS, "median " + g.medianMicros() + " µs");
            assertTrue(g.fraction() >= g.perSecond() * Ceilings.GAP_NANOS / 1e9 - 1e-12, "fraction " + g.fraction() + " for " + g.perSecond() + " gaps/s");
        } else {
            assertEquals(0, g.fraction());
            assertEquals(0, g.medianMicros());
        }
    }
}
