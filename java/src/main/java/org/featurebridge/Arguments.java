package org.featurebridge;

import java.nio.file.Paths;

/** Early checks of caller-supplied arguments, with messages that name the argument. */
final class Arguments {
  private Arguments() {}

  /** Returns {@code value}; throws if it is null or blank. */
  static String requireText(String value, String name) {
    if (value == null || value.isBlank()) {
      throw new IllegalArgumentException(name + " must be a non-empty string; got " + quote(value));
    }
    return value;
  }

  /**
   * Returns {@code path}; throws unless it is an absolute local path without {@code ..}
   * segments or a URL scheme (the Python workers and the service must agree on it).
   */
  static String requireAbsolutePath(String path, String name) {
    requireText(path, name);
    if (path.contains("://")) {
      throw new IllegalArgumentException(
          name + " " + quote(path) + " is a URL; pass an absolute path on a filesystem the "
              + "Python workers share");
    }
    boolean absolute = path.startsWith("/") || Paths.get(path).isAbsolute();
    boolean dotDot = false;
    for (String segment : path.replace('\\', '/').split("/")) {
      dotDot |= segment.equals("..");
    }
    if (!absolute || dotDot) {
      throw new IllegalArgumentException(
          name + " " + quote(path) + " must be an absolute path without '..' segments");
    }
    return path;
  }

  /**
   * Returns {@code address}; throws unless it is {@code host:port} with a port in 1..65535.
   */
  static String requireHostPort(String address, String name) {
    int colon = address == null ? -1 : address.lastIndexOf(':');
    String host = colon < 0 ? "" : address.substring(0, colon);
    String port = colon < 0 ? "" : address.substring(colon + 1);
    int number = -1;
    if (port.matches("[0-9]{1,5}")) {
      number = Integer.parseInt(port);
    }
    if (host.isBlank() || host.contains("/") || number < 1 || number > 65535) {
      throw new IllegalArgumentException(
          name + " must be \"host:port\" (e.g. \"localhost:8097\"); got " + quote(address));
    }
    return address;
  }

  private static String quote(String value) {
    return value == null ? "null" : "\"" + value + "\"";
  }
}
