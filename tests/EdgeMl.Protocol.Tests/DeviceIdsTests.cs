using EdgeMl.Protocol.Wire;

namespace EdgeMl.Protocol.Tests;

/// <summary>Device ids: MQTT topic levels and client ids that cannot pass for the hub's own identities or paths.</summary>
public sealed class DeviceIdsTests
{
    [Theory]
    [InlineData("press-2")]
    [InlineData("pi4.line_a-01")]
    [InlineData("pages")]
    public void Ordinary_names_are_device_ids(string id) => Assert.Null(DeviceIds.Problem(id));

    [Theory]
    [InlineData("", "is not valid")]
    [InlineData("a/b", "is not valid")]
    [InlineData("-x", "is not valid")]
    [InlineData("edgeml-hub", "is reserved")]
    [InlineData("Admin", "is reserved")]
    [InlineData("page", "/api/devices/page is one of the hub's own paths")]
    [InlineData("PAGE", "one of the hub's own paths")]
    public void Names_that_are_not_valid_or_belong_to_the_hub_are_refused_saying_why(string id, string why) =>
        Assert.Contains(why, DeviceIds.Problem(id), StringComparison.Ordinal);
}
