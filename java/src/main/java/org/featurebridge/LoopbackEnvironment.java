package org.featurebridge;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PortablePipelineOptions;

/**
 * Makes {@code --defaultEnvironmentType=LOOPBACK} usable with cross-language transforms.
 *
 * <p>Beam Java (2.62) builds the pipeline's default environment when a cross-language transform
 * is expanded, at construction time; for LOOPBACK that environment needs an address, which the
 * PortableRunner only knows when {@code run()} starts its worker service, so expansion fails with
 * "External service address must not be empty". Given {@code --defaultEnvironmentConfig=host:port},
 * the PortableRunner binds its loopback worker service to exactly that address, so a free local
 * port chosen up front satisfies both.
 *
 * <p>Beam 2.62's loopback worker service also cannot start a second worker in the same JVM once
 * the first has shut down (the run then hangs), and the Flink and Spark runners shut a stage's
 * workers down when the stage ends unless {@code --environmentCacheMillis} keeps them, so {@link
 * #prepare} sets that as well (to {@value #CACHE_MILLIS} ms, unless given): one worker per job.
 */
public final class LoopbackEnvironment {
  /** Beam's name of the loopback environment type. */
  public static final String LOOPBACK = "LOOPBACK";
  /** How long an idle SDK environment is kept within a job when {@link #prepare} sets it. */
  public static final int CACHE_MILLIS = 3_600_000;

  private LoopbackEnvironment() {}

  /** True when {@code options} ask for LOOPBACK but name no worker address yet. */
  public static boolean needsAddress(PipelineOptions options) {
    PortablePipelineOptions portable = options.as(PortablePipelineOptions.class);
    String config = portable.getDefaultEnvironmentConfig();
    return LOOPBACK.equals(portable.getDefaultEnvironmentType())
        && (config == null || config.isBlank());
  }

  /**
   * With LOOPBACK: sets {@code defaultEnvironmentConfig} to {@code localhost:<a free port>} and
   * {@code environmentCacheMillis} to {@value #CACHE_MILLIS}, each only if not given; otherwise
   * leaves {@code options} alone. Call before applying featurebridge stages.
   *
   * @return {@code options}
   */
  public static PipelineOptions prepare(PipelineOptions options) {
    PortablePipelineOptions portable = options.as(PortablePipelineOptions.class);
    if (needsAddress(options)) {
      portable.setDefaultEnvironmentConfig("localhost:" + freePort());
    }
    if (LOOPBACK.equals(portable.getDefaultEnvironmentType())
        && portable.getEnvironmentCacheMillis() == 0) {
      portable.setEnvironmentCacheMillis(CACHE_MILLIS);
    }
    return options;
  }

  private static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free local port for the loopback worker", e);
    }
  }
}
