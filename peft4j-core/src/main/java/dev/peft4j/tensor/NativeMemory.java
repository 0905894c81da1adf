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
    private static final MethodHandle CALLOC, FREE;

    static {
        MethodHandle c = null, f = null;
        try {
            Linker linker = Linker.nativeLinker();
            c = linker.downcallHandle(linker.defaultLookup().find("calloc").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
            f = linker.downcallHandle(linker.defaultLookup().find("free").orElseThrow(),
                    FunctionDescriptor.ofVoid(ValueLayout.ADDRESS));
        } catch (Throwable t) {
            c = f = null;
        }
        CALLOC = c;
        FREE = f;
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
                return owned.asSlice(pad, bytes);
            } catch (OutOfMemoryError e) {
                throw e;
            } catch (Throwable t) {
                // native access refused: fall through
            }
        }
        return (owner != null ? owner : Arena.ofAuto()).allocate(bytes, 64);
    }

    private static void free(long address) {
        try {
            FREE.invokeExact(MemorySegment.ofAddress(address));
        } catch (Throwable ignored) {
            // nothing to do at cleanup time
        }
    }
}
