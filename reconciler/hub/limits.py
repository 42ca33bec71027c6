"""IoT Hub and IoT Edge limits the specs are checked against (see docs/azure.md)."""

import re

MAX_DEPLOYMENTS_PER_HUB = 100  # standard hub, layered deployments included
MAX_MODULES_PER_DEPLOYMENT = 50
MAX_CUSTOM_METRICS = 5
MAX_ID_LENGTH = 128
CONTENT_HASH_LENGTH = 8
CREATE_OPTIONS_CHUNK = 512  # a twin string value
MAX_CREATE_OPTIONS_CHUNKS = 8  # 4 KB, what IoT Edge tooling accepts

# Device ids: up to 128 ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '
DEVICE_ID = re.compile(r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")
# Twin property names (tags): no '.', '$', spaces or control characters.
TAG_KEY = re.compile(r"^[^.$\s\x00-\x1f\x7f-\x9f]{1,1024}$")

# IoT Hub evaluates a configuration shortly after it is created or changed, then every 5 minutes;
# until then its system and custom metrics are empty or stale ("it can take up to 5 minutes for
# the IoT Hub to process the new information", IoT Hub automatic device management docs,
# iot-hub-automatic-device-management.md; the Azure CLI's `az iot edge deployment show-metric`).
METRICS_EVALUATION_SECONDS = 300
