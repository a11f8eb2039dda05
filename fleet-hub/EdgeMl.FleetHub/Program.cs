using EdgeMl.FleetHub;
using EdgeMl.FleetHub.Apis;
using EdgeMl.FleetHub.Broker;
using EdgeMl.FleetHub.Ingest;
using EdgeMl.FleetHub.Store;

var builder = WebApplication.CreateSlimBuilder(args);
var settings = new HubSettings();
builder.Configuration.Bind(settings);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton(_ => new HubStore(settings.Data));
builder.Services.AddSingleton<TelemetryIngest>();
if (settings.Broker.Length > 0)
{
    builder.Services.AddHostedService<ExternalBrokerClient>();
}
else
{
    builder.Services.AddHostedService<EmbeddedBroker>();
}
var app = builder.Build();
app.MapDevicesApi();
app.Run();

public partial class Program;
