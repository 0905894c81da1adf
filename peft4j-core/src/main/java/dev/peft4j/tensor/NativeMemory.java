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
        if (owner == null && bytes < HUGE && CALLOC != null) {
            MemorySegment s = fromSlab(bytes);
            if (s != null) return s;
        }
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

    /** Blocks at least this large get their own huge pages; smaller ones are cut from a shared slab that has them. */
    private static final long HUGE = 4L << 20, SLAB = 32L << 20, PAGE = 2L << 20;
    private static MemorySegment slab;
    private static long slabUsed;

    /**
     * A zeroed, 64-byte aligned slice of a shared 32 MiB slab that is 2 MiB aligned and advised for huge pages, or null where
     * native calls are refused. A layer's weight matrices (a few MB each, decoded one after another in short streams) then sit
     * in huge pages like the large ones: on its own, a 1-3 MB block is too small to be given any, and streaming it takes a
     * TLB miss per 4 KiB (measured: a layer's products read 43 GB/s against the output head's 66). A slab is freed when no
     * slice of it is reachable any more; slices are never reused, so they stay zeroed.
     */
    private static synchronized MemorySegment fromSlab(long bytes) {
        long need = (bytes + 63) & ~63L;
        if (slab == null || slabUsed + need > slab.byteSize()) {
            try {
                MemorySegment raw = (MemorySegment) CALLOC.invokeExact(SLAB + PAGE, 1L);
                if (raw.address() == 0) return null;
                final long address = raw.address();
                long pad = (PAGE - address % PAGE) % PAGE;
                MemorySegment owned = raw.reinterpret(SLAB + PAGE, Arena.ofAuto(), x -> free(address));
                hugePages(address + pad, SLAB);
                slab = owned.asSlice(pad, SLAB);
                slabUsed = 0;
            } catch (Throwable t) {
                return null;
            }
        }
        MemorySegment s = slab.asSlice(slabUsed, bytes);
        slabUsed += need;
        return s;
    }

    /**
     * Asks Linux for transparent huge pages over the whole 2 MiB pages of a large block (where THP is in "madvise" mode):
     * streaming hundreds of MB of weights then takes far fewer TLB misses. Advisory; errors are ignored.
     */
    private static void hugePages(long address, long bytes) {
        if (MADVISE == null || bytes < HUGE) return;
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
