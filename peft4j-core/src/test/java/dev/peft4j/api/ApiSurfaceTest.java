package dev.peft4j.api;

import org.junit.jupiter.api.Test;

import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.WildcardType;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** The API package is self-contained: its public signatures name only JDK types and other API types, never internal ones. */
class ApiSurfaceTest {
    static List<Class<?>> apiClasses() throws Exception {
        URI u = Peft4j.class.getResource("Peft4j.class").toURI();
        List<Class<?>> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(Path.of(u).getParent())) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                if (!n.endsWith(".class") || n.equals("package-info.class")) continue;
                out.add(Class.forName("dev.peft4j.api." + n.substring(0, n.length() - 6)));
            }
        }
        return out;
    }

    static void check(Type t, String where, List<String> bad) {
        switch (t) {
            case Class<?> c -> {
                while (c.isArray()) c = c.getComponentType();
                if (c.isPrimitive()) return;
                String n = c.getName();
                if (!(n.startsWith("java.") || n.startsWith("dev.peft4j.api."))) bad.add(where + ": " + n);
            }
            case ParameterizedType p -> {
                check(p.getRawType(), where, bad);
                for (Type a : p.getActualTypeArguments()) check(a, where, bad);
            }
            case GenericArrayType g -> check(g.getGenericComponentType(), where, bad);
            case WildcardType w -> {
                for (Type b : w.getUpperBounds()) check(b, where, bad);
                for (Type b : w.getLowerBounds()) check(b, where, bad);
            }
            default -> { }
        }
    }

    @Test
    void publicSignaturesUseOnlyApiAndJdkTypes() throws Exception {
        List<String> bad = new ArrayList<>();
        int publicTypes = 0;
        for (Class<?> c : apiClasses()) {
            if (!Modifier.isPublic(c.getModifiers())) continue;
            publicTypes++;
            List<Executable> ex = new ArrayList<>(List.of(c.getDeclaredConstructors()));
            ex.addAll(List.of(c.getDeclaredMethods()));
            for (Executable e : ex) {
                if (!Modifier.isPublic(e.getModifiers()) || e.isSynthetic()) continue;
                String where = c.getSimpleName() + "." + e.getName();
                for (Type p : e.getGenericParameterTypes()) check(p, where, bad);
                if (e instanceof Method m) check(m.getGenericReturnType(), where, bad);
                for (Type x : e.getGenericExceptionTypes()) check(x, where, bad);
            }
            for (Field f : c.getDeclaredFields()) {
                if (Modifier.isPublic(f.getModifiers())) check(f.getGenericType(), c.getSimpleName() + "." + f.getName(), bad);
            }
        }
        assertTrue(publicTypes >= 15, "found the API types: " + publicTypes);
        assertEquals(List.of(), bad, "internal types in public API signatures");
    }
}
