package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Zeroed, 64-byte aligned off-heap memory for weights the engine derives at load (packed panels, 8-bit copies), freed when
 * unreachable. It comes from the C library's calloc, so it is not counted against the JVM's direct-memory limit (which is the
 * heap size unless set): weights then never need heap or direct-memory headroom, and {@code -Xmx1g} holds only activations.
 * Falls back to {@link Arena#ofAuto()} where native calls are not allowed.
 */
final class NativeMemory {
    private static final MethodHandle CALLOC, FREE, MADVISE;
    private static final int MADV_HUGEPAGE = 14;

    static {
        MethodHandle c = null, f = null, m = null;
        try {
            Linker linker = Linker.nativeLinker();
            c = linker.downcallHandle(linker.defaultLookup().find("calloc").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
            f = linker.downcallHandle(linker.defaultLookup().find("free").orElseThrow(),
                    FunctionDescriptor.ofVoid(ValueLayout.ADDRESS));
            m = linker.defaultLookup().find("madvise").map(a -> linker.downcallHandle(a,
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT))).orElse(null);
        } catch (Throwable t) {
            c = f = m = null;
        }
        CALLOC = c;
        FREE = f;
        MADVISE = System.getProperty("os.name", "").startsWith("Linux") ? m : null;
    }

    private NativeMemory() {}

    static MemorySegment allocate(long bytes) {
        return allocate(bytes, null);
    }

    /** As {@link #allocate(long)}, freed when {@code owner} closes (null: when unreachable). */
    static MemorySegment allocate(long bytes, Arena owner) {
        bytes = Math.max(bytes, 64);
        if (CALLOC != null) {
            try {
                MemorySegment raw = (MemorySegment) CALLOC.invokeExact(bytes + 64, 1L);
                if (raw.address() == 0) throw new OutOfMemoryError("calloc of " + (bytes + 64) + " bytes failed (native memory exhausted)");
                long pad = (64 - raw.address() % 64) % 64;
                final long address = raw.address();
                MemorySegment owned = raw.reinterpret(bytes + 64, owner != null ? owner : Arena.ofAuto(), s -> free(address));
                hugePages(address, bytes + 64);
                return owned.asSlice(pad, bytes);
            } catch (OutOfMemoryError e) {
                throw e;
            } catch (Throwable t) {
                // native access refused: fall through
            }
        }
        return (owner != null ? owner : Arena.ofAuto()).allocate(bytes, 64);
    }

    /**
     * Asks Linux for transparent huge pages over the whole 2 MiB pages of a large block (where THP is in "madvise" mode):
     * streaming hundreds of MB of weights then takes far fewer TLB misses. Advisory; errors are ignored.
     */
    private static void hugePages(long address, long bytes) {
        if (MADVISE == null || bytes < (4L << 20)) return;
        long page = 2L << 20;
        long from = (address + page - 1) / page * page, to = (address + bytes) / page * page;
        if (to <= from) return;
        try {
            int rc = (int) MADVISE.invokeExact(MemorySegment.ofAddress(from), to - from, MADV_HUGEPAGE);
        } catch (Throwable ignored) {
            // advisory only
        }
    }

    private static void free(long address) {
        try {
            FREE.invokeExact(MemorySegment.ofAddress(address));
        } catch (Throwable ignored) {
            // nothing to do at cleanup time
        }
    }
}
