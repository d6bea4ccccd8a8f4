package dev.gruedge.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * The device-side parity test: `./gradlew connectedAndroidTest` runs the bundle from the assets on the phone and
 * asserts the manifest's tolerances, with the same rules as `gru-edge verify --bundle` on a desktop.
 */
@RunWith(AndroidJUnit4::class)
class BundleParityTest {
    private val assets = InstrumentationRegistry.getInstrumentation().targetContext.assets

    @Test
    fun bundlePassesOnCpu() {
        val result = DeviceParity.run(assets, DemoAssets.bundle(assets), gpu = null)
        assertTrue("CPU parity failed: ${result.report.failures}", result.report.passed)
        assertTrue(result.report.samples > 0)
    }

    @Test
    fun bundlePassesOnGpuOrItsFallback() {
        // the model's own GPU settings (precision, fallback), applied as on the desktop (parity/GpuSettings.kt)
        val result = DeviceParity.run(assets, DemoAssets.bundle(assets), DemoAssets.description(assets).gpu)
        assertTrue("${result.accelerator} parity failed (${result.note}): ${result.report.failures}",
            result.report.passed)
    }
}
