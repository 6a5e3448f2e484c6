# The MCU's internal temperature sensor, in degrees Celsius:
#   ESP32:  esp32.mcu_temperature() (newer chips) or raw_temperature() (F)
#   RP2040: ADC channel 4, T = 27 - (V - 0.706) / 0.001721, in integers
# Other ports raise OSError when the agent starts.

try:
    import machine
except ImportError:  # CPython
    machine = None
try:
    import esp32
except ImportError:
    esp32 = None


class InternalTemp:
    def __init__(self, cfg, factor):
        self.factor = factor
        self.adc = None
        self.mode = None
        if esp32 is not None and hasattr(esp32, "mcu_temperature"):
            self.mode = "mcu"
        elif esp32 is not None and hasattr(esp32, "raw_temperature"):
            self.mode = "raw_f"
        elif machine is not None and hasattr(machine, "ADC"):
            try:
                self.adc = machine.ADC(4)  # RP2040 temperature channel
                self.mode = "rp2"
            except (ValueError, TypeError, OSError):
                self.adc = None
        if self.mode is None:
            raise OSError("source internal_temp: this port has no internal temperature sensor")

    def read(self, t):
        f = self.factor
        if self.mode == "mcu":
            return esp32.mcu_temperature() * f
        if self.mode == "raw_f":
            return (esp32.raw_temperature() - 32) * 5 * f // 9
        # microvolts = raw * 3300000 / 65535, split to stay small-int:
        uv = self.adc.read_u16() * 3300 // 65535 * 1000
        # T*f = 27*f - (uv - 706000) * f / 1721
        return 27 * f - (uv - 706000) * f // 1721

    def deinit(self):
        self.adc = None
