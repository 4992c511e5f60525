import HeraldCampaign
import HeraldServerKit

await ServiceMain.run(CampaignDefinition.self)
